// response_format of POST /v1/chat/completions: OpenAI's three forms, turned into the grammar the workers constrain
// decoding with (@trtd/grammar's GrammarSpec, carried in the internal request). `text` is no constraint;
// `json_object` is any JSON object; `json_schema` is JSON valid against `json_schema.schema` (absent: any JSON
// value), `strict: true` adding xgrammar's strict mode (no properties or items the schema does not name). Bad forms
// and schemas get a 400 naming the field (`response_format.json_schema.schema`, …) with the grammar engine's reason.
import { checkGrammarSpec, InvalidGrammarError, type GrammarSpec } from "@trtd/grammar";
import { ApiErrorCodes, InvalidRequestError } from "../errors.js";
import type { Body } from "./validate.js";

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const JSON_SCHEMA_KNOWN = new Set(["name", "description", "schema", "strict"]);

/** The shape checks (synchronous); undefined for absent, null or `{type: "text"}`. Throws InvalidRequestError. */
export function parseResponseFormat(body: Body): GrammarSpec | undefined {
  const v = body.response_format;
  if (v === undefined || v === null) return undefined;
  const param = "response_format";
  if (typeof v !== "object" || Array.isArray(v)) throw new InvalidRequestError(`'${param}' must be an object`, param);
  const rf = v as Body;
  for (const k of Object.keys(rf)) {
    if (k !== "type" && !(rf.type === "json_schema" && k === "json_schema")) {
      throw new InvalidRequestError(`unknown field '${param}.${k}'`, `${param}.${k}`, ApiErrorCodes.unknownField);
    }
  }
  switch (rf.type) {
    case "text":
      return undefined;
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const js = rf.json_schema;
      const p = `${param}.json_schema`;
      if (typeof js !== "object" || js === null || Array.isArray(js)) throw new InvalidRequestError(`'${p}' is required with type "json_schema" (an object)`, p);
      const j = js as Body;
      for (const k of Object.keys(j)) {
        if (!JSON_SCHEMA_KNOWN.has(k)) throw new InvalidRequestError(`unknown field '${p}.${k}'`, `${p}.${k}`, ApiErrorCodes.unknownField);
      }
      if (typeof j.name !== "string" || !NAME.test(j.name)) {
        throw new InvalidRequestError(`'${p}.name' must be 1 to 64 letters, digits, '_' or '-'`, `${p}.name`);
      }
      if (j.description !== undefined && j.description !== null && typeof j.description !== "string") {
        throw new InvalidRequestError(`'${p}.description' must be a string`, `${p}.description`);
      }
      if (j.strict !== undefined && j.strict !== null && typeof j.strict !== "boolean") {
        throw new InvalidRequestError(`'${p}.strict' must be a boolean`, `${p}.strict`);
      }
      const schema = j.schema ?? {};
      if (typeof schema !== "object" || Array.isArray(schema)) throw new InvalidRequestError(`'${p}.schema' must be a JSON Schema object`, `${p}.schema`);
      return { type: "json_schema", schema: schema as Body, ...(j.strict === true ? { strict: true } : {}) };
    }
    default:
      throw new InvalidRequestError(`'${param}.type' must be "text", "json_object" or "json_schema"`, `${param}.type`);
  }
}

/**
 * The deeper checks (a valid JSON Schema, one xgrammar can build), before the request goes to a worker.
 * @throws InvalidRequestError (400, invalid_value) naming the field and saying why
 */
export async function checkResponseFormat(spec: GrammarSpec): Promise<GrammarSpec> {
  try {
    return await checkGrammarSpec(spec.type === "json_schema" ? { ...spec } : spec, "response_format.json_schema");
  } catch (err) {
    if (!(err instanceof InvalidGrammarError)) throw err;
    throw new InvalidRequestError(err.message, err.field, ApiErrorCodes.invalidValue, { cause: err });
  }
}
