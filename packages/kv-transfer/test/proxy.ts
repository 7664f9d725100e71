import { createServer, connect, type Socket } from "node:net";

/**
 * A TCP relay between a puller and an offering server, for fault tests: it can flip one byte of the
 * server→puller stream at a given position, or stop forwarding after some bytes (a stalled/killed peer).
 */
export interface FaultProxy {
  port: number;
  /** Bytes forwarded server → puller so far. */
  forwarded(): number;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number, fault: { flipAt?: number; stallAfter?: number } = {}): Promise<FaultProxy> {
  let forwarded = 0;
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect({ host: "127.0.0.1", port: targetPort });
    sockets.add(down);
    sockets.add(up);
    const end = () => {
      down.destroy();
      up.destroy();
    };
    down.on("close", end).on("error", end);
    up.on("close", end).on("error", end);
    down.on("data", (d: Buffer) => up.write(d));
    up.on("data", (d: Buffer) => {
      let out = d;
      if (fault.flipAt !== undefined && fault.flipAt >= forwarded && fault.flipAt < forwarded + d.length) {
        out = Buffer.from(d);
        out[fault.flipAt - forwarded]! ^= 0x01;
      }
      if (fault.stallAfter !== undefined && forwarded + out.length > fault.stallAfter) {
        // Hold back the rest (the transfer stalls mid-way) but keep reading, so the relay still sees the
        // offering side's connection close as a real puller would.
        out = out.subarray(0, Math.max(0, fault.stallAfter - forwarded));
      }
      forwarded += out.length;
      if (out.length) down.write(out);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as { port: number }).port,
    forwarded: () => forwarded,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
