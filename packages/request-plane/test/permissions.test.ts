// Per-role subject permissions (planePermissions) on a real nats-server: each party may do what its role needs on
// the request plane and nothing else.
import { connect as natsConnect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connect,
  endpointId,
  planePermissions,
  PermissionDeniedError,
  startNatsServer,
  TimeoutError,
  type ConnectOptions,
  type NatsServerHandle,
  type PlaneRole,
  type RequestPlane,
} from "../src/index.js";

const work = endpointId("perm/work/run");
const other = endpointId("perm/other/run");
const roles = {
  caller: { inboxPrefix: "_INBOX.perm.caller", calls: [work, other] },
  worker: { inboxPrefix: "_INBOX.perm.worker", serves: [work] },
  otherWorker: { inboxPrefix: "_INBOX.perm.other", serves: [other] },
} satisfies Record<string, PlaneRole>;
type Role = keyof typeof roles;
const password = (role: Role) => `pw-${role}-0123456789`;

let srv: NatsServerHandle;
const planes: RequestPlane[] = [];

beforeAll(async () => {
  const all = Object.values(roles);
  srv = await startNatsServer({
    users: (Object.keys(roles) as Role[]).map((role) => ({ user: role, password: password(role), permissions: planePermissions(roles[role], all) })),
  });
});

afterAll(async () => {
  for (const p of planes) await p.close();
  await srv?.stop();
});

async function planeAs(role: Role, extra: ConnectOptions = {}): Promise<RequestPlane> {
  const p = await connect(srv.uri, { user: role, pass: password(role), inboxPrefix: roles[role].inboxPrefix, maxReconnectAttempts: 0, ...extra });
  planes.push(p);
  return p;
}

describe("request-plane - per-role NATS permissions (planePermissions)", () => {
  it("derives the lists from the subjects the plane uses", () => {
    expect(planePermissions(roles.worker, Object.values(roles))).toEqual({
      publish: ["rpd.perm.work.run", "_INBOX.perm.caller.>"],
      subscribe: ["_INBOX.perm.worker.>", "rp.perm.work.run", "rp.perm.work.run.i.*", "rpd.perm.work.run.probe", "$SRV.>"],
      allowResponses: true,
    });
    expect(planePermissions(roles.caller, Object.values(roles))).toEqual({
      publish: [
        "rp.perm.work.run", "rp.perm.work.run.i.*", "rpd.perm.work.run.probe",
        "rp.perm.other.run", "rp.perm.other.run.i.*", "rpd.perm.other.run.probe",
        "_INBOX.perm.worker.>", "_INBOX.perm.other.>",
      ],
      subscribe: ["_INBOX.perm.caller.>", "rpd.perm.work.run", "rpd.perm.other.run"],
    });
  });

  it("the roles' normal traffic works: discovery, a streamed request with credit, a cancel", async () => {
    const worker = await planeAs("worker");
    let cancelled = 0;
    await worker.serve(work, async function* (n: number, ctx) {
      for (let i = 0; i < n; i++) {
        if (ctx.signal.aborted) {
          cancelled++;
          return;
        }
        yield i;
        await new Promise((r) => setTimeout(r, 1));
      }
    });
    const caller = await planeAs("caller");
    const client = caller.client<number, number>(work);
    await client.waitForInstances({ timeoutMs: 5000 });
    const got: number[] = [];
    for await (const x of client.generate(200)) got.push(x);
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i));
    // a cancel reaches the worker's control inbox
    const s = client.generate(100_000);
    for await (const x of s) if (x === 3) break;
    await expect.poll(() => cancelled, { timeout: 5000 }).toBe(1);
  });

  it("a worker's account cannot serve another role's endpoint, nor call one, nor read the caller's inboxes", async () => {
    const otherWorker = await planeAs("otherWorker");
    const serving = otherWorker.serve(work, () => "impostor");
    await expect(serving).rejects.toBeInstanceOf(PermissionDeniedError);
    await expect(serving).rejects.toThrow(/Permissions Violation for Subscription to "rp\.perm\.work\.run/);
    // nor without the NATS micro service (plain subscriptions)
    await expect(otherWorker.serve(work, () => "impostor", { microService: false })).rejects.toBeInstanceOf(PermissionDeniedError);

    // calling an endpoint is the caller's: the request never reaches the worker
    const worker = await planeAs("worker");
    let served = 0;
    await worker.serve(work, () => ++served, { microService: false });
    const call = otherWorker.client<number, number>(work, { acceptTimeoutMs: 500 }).request(1);
    await expect(call).rejects.toBeInstanceOf(TimeoutError); // NATS drops the publish; nobody accepts it
    expect(served).toBe(0);

    // a raw connection with the worker's account cannot subscribe to the caller's replies
    const nc = await natsConnect({ servers: srv.uri, user: "worker", pass: password("worker"), maxReconnectAttempts: 0 });
    try {
      const sub = nc.subscribe("_INBOX.perm.caller.>");
      await nc.flush(); // the server answers the SUB before this PONG
      expect(sub.isClosed()).toBe(true);
      const reason = (await sub.closed) as Error | void;
      expect(reason?.message).toMatch(/Permissions Violation for Subscription to "_INBOX\.perm\.caller\.>"/);
    } finally {
      await nc.close();
    }
  });

  it("the caller's account cannot serve (register as a worker)", async () => {
    const caller = await planeAs("caller");
    await expect(caller.serve(work, () => "impostor")).rejects.toBeInstanceOf(PermissionDeniedError);
  });
});
