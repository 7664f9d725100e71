import type { ShmEndpoint } from "../handle.js";
import { continuesOn, controlOverConnection, pullOverConnection } from "./tcp.js";
import type { PullTransport } from "./types.js";

/** Same-host shared memory: a ring in /dev/shm, controlled over the TCP connection (see tcp-client.ts). */
export const shmTransport: PullTransport<ShmEndpoint> = {
  name: "shm",
  sizeCheck: "segments",
  releasesOnFailure: true, // the server releases the offer when the control connection drops
  usable: (ep, _handle, _sink, env) => ep.hostId === env.hostId,
  canContinue: continuesOn,
  pull: pullOverConnection,
  control: controlOverConnection,
};
