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
