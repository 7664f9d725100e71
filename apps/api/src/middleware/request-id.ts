import { randomUUID } from "node:crypto";
import { traceStage } from "@trtd/apps-common";
import type { MiddlewareHandler } from "hono";

declare module "hono" {
  interface ContextVariableMap {
    requestId: string;
    /** performance.now() when the request arrived. */
    arrival: number;
  }
}

const REQUEST_ID_HEADER = "x-request-id";
const VALID_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Takes the client's X-Request-Id when well formed, else makes one; echoes it on the response. */
export function requestId(): MiddlewareHandler {
  return async function requestIdMiddleware(c, next) {
    c.set("arrival", performance.now());
    traceStage?.("api.arrival");
    const given = c.req.header(REQUEST_ID_HEADER);
    const id = given && VALID_ID.test(given) ? given : randomUUID();
    c.set("requestId", id);
    c.header(REQUEST_ID_HEADER, id);
    await next();
  };
}
