import type { MiddlewareHandler } from "hono";
import { bodyLimit as honoBodyLimit } from "hono/body-limit";
import { RequestTooLargeError } from "../errors.js";

/** hono's body limit (checks Content-Length and counts streamed bodies), failing with our typed error. */
export function bodyLimit(maxBytes: number): MiddlewareHandler {
  return honoBodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new RequestTooLargeError(maxBytes);
    },
  });
}
