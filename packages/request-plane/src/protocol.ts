/*
 * Wire messages (encoded by the plane's codec). Short keys keep frames small.
 *
 * client → queue or instance subject, reply = client inbox:
 *   req    {k:"req", id, dl?, h?, p, w}      dl = absolute deadline (epoch ms), w = credit window (frames)
 * client → instance subject:
 *   cancel {k:"cancel", id, r?}              r = reason text
 *   credit {k:"credit", id, n}               n = frames consumed so far by the client
 * server → client inbox (reply = the server's "client gone" inbox; a 503 there means the client left):
 *   acc    {k:"acc", id, i, hb}              i = instance id, hb = heartbeat interval the server keeps
 *   data   {k:"d", s, p}                     s = 1, 2, 3 ...
 *   hb     {k:"hb"}
 *   end    {k:"end", s}                      s = number of data frames sent
 *   err    {k:"err", s, c, m, n?, sz?, mx?}  c = error code, m = message, n = error name
 * discovery (announce subject / probe subject):
 *   up     {k:"up", i, lease, m, meta?}      instance alive, lease ms, load metrics
 *   down   {k:"down", i}                     instance stopped cleanly
 *   probe  {k:"probe"}                       asks every instance to announce now
 */
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
  id: string;
  r?: string;
}
export interface CreditMsg {
  k: "credit";
  id: string;
  n: number;
}
export type InstanceInbound = ReqMsg | CancelMsg | CreditMsg;

export interface AccFrame {
  k: "acc";
  id: string;
  i: string;
  hb: number;
}
export interface DataFrame {
  k: "d";
  s: number;
  p: unknown;
}
export interface HbFrame {
  k: "hb";
}
export interface EndFrame {
  k: "end";
  s: number;
}
export interface ErrFrame {
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
