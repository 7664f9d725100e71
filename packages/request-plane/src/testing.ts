/**
 * @trtd/request-plane/testing — helpers for tests and tools, kept out of the package's public entry.
 *
 * - `freePort()`: a port the OS reports free now (tests that must know a port before a server starts).
 * - `InProcessBus`: one in-process "server" shared by several planes (`createInProcessPlane({ bus })`), so a test
 *   can model several processes in one. The shipped single-process mode (`createInProcessPlane()`, the launcher's
 *   `--in-process`) makes its own bus and needs nothing from here.
 */
export { freePort } from "./nats-server.js";
export { InProcessBus } from "./inprocess-transport.js";
