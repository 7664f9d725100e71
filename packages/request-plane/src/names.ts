import { InvalidNameError } from "./errors.js";

/** Dynamo-style address of an endpoint: namespace / component / endpoint. */
export interface EndpointId {
  readonly namespace: string;
  readonly component: string;
  readonly endpoint: string;
}

const NAME = /^[a-z0-9_-]{1,64}$/;
const INSTANCE_ID = /^[a-z0-9_-]{1,64}$/;

/** Throws {@link InvalidNameError} unless `name` is 1–64 chars of lowercase `[a-z0-9-_]`. */
export function validateName(name: string, what = "name"): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new InvalidNameError(`invalid ${what} ${JSON.stringify(name)}: use 1-64 chars of lowercase [a-z0-9-_]`);
  }
  return name;
}

export function validateInstanceId(id: string): string {
  if (typeof id !== "string" || !INSTANCE_ID.test(id)) {
    throw new InvalidNameError(`invalid instance id ${JSON.stringify(id)}: use 1-64 chars of lowercase [a-z0-9-_]`);
  }
  return id;
}

/** Builds a validated {@link EndpointId}; also accepts one `"ns/comp/ep"` string. */
export function endpointId(namespace: string, component?: string, endpoint?: string): EndpointId {
  if (component === undefined && endpoint === undefined) {
    const parts = String(namespace).split("/");
    if (parts.length !== 3) throw new InvalidNameError(`invalid endpoint path ${JSON.stringify(namespace)}: expected ns/component/endpoint`);
    [namespace, component, endpoint] = parts as [string, string, string];
  }
  return Object.freeze({
    namespace: validateName(namespace, "namespace"),
    component: validateName(component as string, "component"),
    endpoint: validateName(endpoint as string, "endpoint"),
  });
}

/** `ns/comp/ep` */
export function endpointPath(e: EndpointId): string {
  return `${e.namespace}/${e.component}/${e.endpoint}`;
}

/** `ns/comp/ep/id`, the printable instance id. */
export function instancePath(e: EndpointId, instanceId: string): string {
  return `${endpointPath(e)}/${instanceId}`;
}

/** Random 16-hex-digit instance id (64 bits, like Dynamo's lease ids). */
export function newInstanceId(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * NATS subjects of an endpoint. `-` and `_` are valid in NATS tokens, so names map 1:1.
 * - requests (queue group `q`): `rp.<ns>.<comp>.<ep>`
 * - one instance (direct routing, cancel, credit): `rp.<ns>.<comp>.<ep>.i.<id>`
 * - discovery announcements: `rpd.<ns>.<comp>.<ep>`; probes: `rpd.<ns>.<comp>.<ep>.probe`
 */
export const subjects = {
  queue: (e: EndpointId) => `rp.${e.namespace}.${e.component}.${e.endpoint}`,
  instance: (e: EndpointId, id: string) => `rp.${e.namespace}.${e.component}.${e.endpoint}.i.${id}`,
  announce: (e: EndpointId) => `rpd.${e.namespace}.${e.component}.${e.endpoint}`,
  probe: (e: EndpointId) => `rpd.${e.namespace}.${e.component}.${e.endpoint}.probe`,
  queueGroup: "q",
} as const;

/** A nats-server `permissions` block: the subjects an account may publish to and subscribe to, nothing else. */
export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
  /** May answer (once) any request it received, whatever its reply subject (nats-server `allow_responses`). */
  allowResponses?: boolean;
}

/** One party of a deployment as the request plane sees it: what it serves, what it calls, where its replies arrive. */
export interface PlaneRole {
  /** Its connections' inbox prefix (`ConnectOptions.inboxPrefix`): replies and control messages to it arrive below. */
  inboxPrefix: string;
  serves?: readonly EndpointId[];
  calls?: readonly EndpointId[];
}

const samePath = (a: EndpointId) => (b: EndpointId) => endpointPath(a) === endpointPath(b);

/**
 * What NATS must let `role` do on the request plane and nothing more, from the same {@link subjects} the server
 * and client use. A server subscribes to its endpoint's request, instance and probe subjects (and `$SRV.>`, the NATS
 * micro service verbs it answers) and announces itself; a client publishes requests and probes and watches
 * announcements. Replies and control messages go only to the inboxes of `peers` it serves or calls.
 */
export function planePermissions(role: PlaneRole, peers: readonly PlaneRole[]): SubjectPermissions {
  const serves = role.serves ?? [];
  const calls = role.calls ?? [];
  const publish = new Set<string>();
  const subscribe = new Set<string>([`${role.inboxPrefix}.>`]);
  for (const e of serves) {
    subscribe.add(subjects.queue(e)).add(subjects.instance(e, "*")).add(subjects.probe(e));
    publish.add(subjects.announce(e));
  }
  if (serves.length > 0) subscribe.add("$SRV.>");
  for (const e of calls) {
    publish.add(subjects.queue(e)).add(subjects.instance(e, "*")).add(subjects.probe(e));
    subscribe.add(subjects.announce(e));
  }
  for (const peer of peers) {
    const callsUs = (peer.calls ?? []).some((e) => serves.some(samePath(e)));
    const servesUs = (peer.serves ?? []).some((e) => calls.some(samePath(e)));
    if (callsUs || servesUs) publish.add(`${peer.inboxPrefix}.>`);
  }
  return { publish: [...publish], subscribe: [...subscribe], ...(serves.length > 0 ? { allowResponses: true } : {}) };
}
