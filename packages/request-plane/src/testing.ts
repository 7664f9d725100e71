/**
 * @trtd/request-plane/testing — helpers for tests and tools, kept out of the package's public entry.
 *
 * - `freePort()`: a port the OS reports free now (tests that must know a port before a server starts).
 * - `breakDirectLinks(plane)`: destroys the plane's client direct links as a network failure would (the plane,
 *   its NATS connection and the serving instances stay up), to test what a dropped link does.
 * - `InProcessBus`: one in-process "server" shared by several planes (`createInProcessPlane({ bus })`), so a test
 *   can model several processes in one. The shipped single-process mode (`createInProcessPlane()`, the launcher's
 *   `--in-process`) makes its own bus and needs nothing from here.
 */
export { freePort } from "./nats-server.js";
export { InProcessBus } from "./inprocess-transport.js";

import type { RequestPlane } from "./plane.js";
export function breakDirectLinks(plane: RequestPlane): void {
  plane.breakClientLinks();
}
