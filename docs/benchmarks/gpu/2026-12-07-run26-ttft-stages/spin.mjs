// Scratch: keep this process's event loop polling (never sleeping in epoll_wait) to test the wake-up latency theory;
// stops when nothing but the spin keeps the loop alive.
if (process.env.TRTD_SPIN === "1") {
  let n = 0;
  const spin = () => {
    if (++n % 1000 === 0 && process.getActiveResourcesInfo().every((r) => r === "Immediate")) return;
    setImmediate(spin);
  };
  spin();
}
