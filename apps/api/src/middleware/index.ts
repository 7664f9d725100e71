export { requestId } from "./request-id.js";
export { bearerAuth } from "./auth.js";
export { bodyLimit } from "./body-limit.js";
