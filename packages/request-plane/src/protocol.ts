/*
 * Wire messages (encoded by the plane's codec). Short keys keep frames small.
 *
 * client → queue subject `rp.<ns>.<comp>.<ep>` or instance subject `….i.<id>`, reply = client inbox:
 *   req    {k:"req", id, dl?, h?, p, w}      dl = absolute deadline (epoch ms), w = credit window (frames)
 * server → client inbox; a frame's NATS reply subject is the request's control subject on the server. acc, hb,
 * end and err frames always carry it; data frames carry it until the server gets the client's first control
 * message (which proves the client has it), then one data frame per half heartbeat interval does (so a dead
 * client's no-responders and stray-frame cancels still come within a heartbeat interval) and the others go
 * without (fewer bytes per reply each way):
 *   acc    {k:"acc", i, hb}                  i = instance id, hb = heartbeat interval the server keeps.
 *                                            Sent only if no other frame went out first; otherwise the first
 *                                            frame carries i and hb itself (a one-reply request is one frame).
 *   data   {k:"d", s, p, e?, i?, hb?}        s = 1, 2, 3 ...; e = 1 marks the last reply (no end frame follows)
 *   hb     {k:"hb", s?, c?}                 s = data frames sent so far, c = replies the server knows consumed
 *                                            (the last credit it got). NATS core drops messages across a
 *                                            reconnect, so the client checks both: s beyond what it received =
 *                                            replies lost (StreamBrokenError); c below what it credited = a lost
 *                                            credit, which it sends again. Without them a stream whose tail or
 *                                            credit was lost waits on heartbeats forever (both sides alive).
 *   end    {k:"end", s, i?, hb?}             s = number of data frames sent
 *   err    {k:"err", s, c, m, n?, sz?, mx?, i?, hb?}   c = error code, m = message, n = error name
 * client → the control subject (a frame's reply subject):
 *   cancel {k:"cancel", r?}                  r = reason text
 *   credit {k:"credit", n}                   n = replies consumed so far
 *   A no-responders status there (the client's inbox is gone: its connection died) cancels the request.
 * discovery (announce subject `rpd.<ns>.<comp>.<ep>` / probe subject `….probe`):
 *   up     {k:"up", i, lease, m, meta?, l?}  instance alive, lease ms, load metrics; l = its direct link
 *                                            {h: host, p: port, s: secret} (link-listener.ts), when it has one
 *   down   {k:"down", i}                     instance stopped cleanly
 *   probe  {k:"probe"}                       asks every instance to announce now
 */
/**
 * Credit window when the client names none. Each credit round trip (client → nats-server → server) lets
 * the server send window / 2 more replies in one socket write; at 256 the per-write and per-credit costs
 * were the largest item of the streaming profile (request-plane README, Benchmark). 1024 one-token replies
 * are ~50 KiB buffered at most per stream.
 */
export const DEFAULT_WINDOW = 1024;

export interface ReqMsg {
  k: "req";
  id: string;
  dl?: number;
  h?: Record<string, string>;
  p: unknown;
  w: number;
}
export interface CancelMsg {
  k: "cancel";
  r?: string;
}
export interface CreditMsg {
  k: "credit";
  n: number;
}
export type ControlMsg = CancelMsg | CreditMsg;

/** Fields the first frame of a stream carries when no separate `acc` frame was sent. */
export interface AcceptInfo {
  i?: string;
  hb?: number;
}
export interface AccFrame {
  k: "acc";
  i: string;
  hb: number;
}
export interface DataFrame extends AcceptInfo {
  k: "d";
  s: number;
  p: unknown;
  e?: 1;
}
export interface HbFrame {
  k: "hb";
  /** Data frames sent so far (absent from older servers). */
  s?: number;
  /** Credit the server has: replies consumed as far as it knows (absent from older servers). */
  c?: number;
}
export interface EndFrame extends AcceptInfo {
  k: "end";
  s: number;
}
export interface ErrFrame extends AcceptInfo {
  k: "err";
  s: number;
  c: string;
  m: string;
  n?: string;
  sz?: number;
  mx?: number;
}
export type Frame = AccFrame | DataFrame | HbFrame | EndFrame | ErrFrame;

export interface UpMsg {
  k: "up";
  i: string;
  lease: number;
  m: Record<string, unknown>;
  meta?: Record<string, unknown>;
  /** The instance's direct link: host, port, secret. */
  l?: { h: string; p: number; s: string };
}
export interface DownMsg {
  k: "down";
  i: string;
}
export interface ProbeMsg {
  k: "probe";
}
export type DiscoveryMsg = UpMsg | DownMsg | ProbeMsg;

export function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}
