import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { AuthenticationError } from "../errors.js";

/** Requires `Authorization: Bearer <apiKey>` when an API key is configured; passes everything otherwise. */
export function bearerAuth(apiKey: string | undefined): MiddlewareHandler {
  const expected = apiKey ? Buffer.from(apiKey) : undefined;
  return async function bearerAuthMiddleware(c, next) {
    if (expected) {
      const m = /^Bearer\s+(.+)$/i.exec(c.req.header("authorization") ?? "");
      const given = m ? Buffer.from(m[1].trim()) : undefined;
      if (!given || given.length !== expected.length || !timingSafeEqual(given, expected)) throw new AuthenticationError();
    }
    await next();
  };
}
