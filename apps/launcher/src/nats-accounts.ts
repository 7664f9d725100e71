// The accounts of a nats-server the launcher starts: one per role, each allowed on the request plane what that role
// does there and nothing else (subjects derived from @trtd/request-plane and @trtd/kv-transfer, where they are named).
import { randomBytes } from "node:crypto";
import { Endpoints, kvEventSubjects, natsInboxPrefix, type NatsRole } from "@trtd/apps-common";
import { kvNatsSubjects } from "@trtd/kv-transfer";
import { endpointId, planePermissions, type NatsServerUser, type PlaneRole, type SubjectPermissions } from "@trtd/request-plane";

/** The request-plane roles of a deployment in `namespace`: the api calls both workers, each worker serves its endpoint. */
export function deploymentRoles(namespace: string): Record<NatsRole, PlaneRole> {
  const prefill = endpointId(namespace, Endpoints.prefill.component, Endpoints.prefill.endpoint);
  const decode = endpointId(namespace, Endpoints.decode.component, Endpoints.decode.endpoint);
  return {
    api: { inboxPrefix: natsInboxPrefix(namespace, "api"), calls: [prefill, decode] },
    prefill: { inboxPrefix: natsInboxPrefix(namespace, "prefill"), serves: [prefill] },
    decode: { inboxPrefix: natsInboxPrefix(namespace, "decode"), serves: [decode] },
  };
}

/**
 * Each role's NATS permissions: its request-plane subjects, plus the KV fallback over NATS: prefill workers answer
 * KV requests on their offer subjects (`allow_responses` carries the answers to the requester's inbox); decode
 * workers pull and the api declines unused offers there.
 */
export function rolePermissions(namespace: string): Record<NatsRole, SubjectPermissions> {
  const roles = deploymentRoles(namespace);
  const peers = Object.values(roles);
  const plane = (role: NatsRole) => planePermissions(roles[role], peers);
  const withKv = (p: SubjectPermissions, side: "offers" | "pulls"): SubjectPermissions =>
    side === "offers"
      ? { ...p, subscribe: [...p.subscribe, kvNatsSubjects.all], allowResponses: true }
      : { ...p, publish: [...p.publish, kvNatsSubjects.all] };
  // KV events (apps-common kv-events.ts): workers answer polls on their subjects, the api polls.
  const answersPolls = (p: SubjectPermissions): SubjectPermissions => ({ ...p, subscribe: [...p.subscribe, kvEventSubjects.all], allowResponses: true });
  const polls = (p: SubjectPermissions): SubjectPermissions => ({ ...p, publish: [...p.publish, kvEventSubjects.all] });
  return {
    api: polls(withKv(plane("api"), "pulls")),
    prefill: answersPolls(withKv(plane("prefill"), "offers")),
    decode: answersPolls(withKv(plane("decode"), "pulls")),
  };
}

/** One account per role with a random 192-bit password and that role's permissions. */
export function natsAccounts(namespace: string): Record<NatsRole, NatsServerUser> {
  const permissions = rolePermissions(namespace);
  const account = (role: NatsRole): NatsServerUser => ({ user: `trtd-${role}`, password: randomBytes(24).toString("hex"), permissions: permissions[role] });
  return { api: account("api"), prefill: account("prefill"), decode: account("decode") };
}
