// What a constrained request's output must match (GrammarSpec), its checks, and its cache key. Plain JSON, so that
// it travels unchanged from the api to the workers (apps/common/src/protocol.ts).
import { Ajv2020 } from "ajv/dist/2020.js";
import { InvalidGrammarError } from "./errors.js";
import { xgrammar, xgrammarCall } from "./xgrammar.js";

/** A JSON Schema (draft 2020-12 as xgrammar reads it: types, properties, required, enum, const, items, …). */
export type JsonSchema = Record<string, unknown>;

/**
 * - `json_object`: any JSON object (OpenAI `response_format: {type: "json_object"}`).
 * - `json_schema`: JSON valid against `schema`. `strict` (OpenAI's `strict: true`): no properties or items beyond
 *   those the schema names (xgrammar's strict mode, as if `additionalProperties`/`unevaluatedProperties` were
 *   false where the schema is silent); otherwise JSON Schema's own defaults apply (extra properties allowed).
 * - `structural_tag`: xgrammar's structural tag (free text until a trigger, then a tag's begin, a JSON schema, its
 *   end): the "tag then JSON" shape of tool calls (e.g. `<tool_call>{...}</tool_call>`). Passed to xgrammar as is.
 */
export type GrammarSpec =
  | { type: "json_object" }
  | { type: "json_schema"; schema: JsonSchema; strict?: boolean }
  | { type: "structural_tag"; structuralTag: Record<string, unknown> };

/** How much whitespace the JSON grammars allow. */
export type JsonWhitespace = "compact" | "any";

/** The options of the JSON grammars (GrammarCompilerOptions.whitespace). */
export interface JsonGrammarOptions {
  /**
   * "compact" (default): one line, separators ", " and ": " (Python's json.dumps), no other whitespace: the output
   * is bounded by the schema and a model cannot spin on whitespace (a random-weight one would). "any": JSON's
   * whitespace anywhere (xgrammar's default), at most `maxWhitespace` characters in a row.
   */
  whitespace?: JsonWhitespace;
  /** With whitespace "any": the longest run of whitespace (default 16). */
  maxWhitespace?: number;
}

const SEPARATORS: [string, string] = [", ", ": "];

/** The xgrammar arguments of a JSON schema: [schema text, anyWhitespace, indent, separators, strict, maxWhitespace]. */
export function jsonSchemaArgs(schema: JsonSchema, strict: boolean, options: JsonGrammarOptions = {}) {
  const any = (options.whitespace ?? "compact") === "any";
  return [JSON.stringify(schema), any, any ? undefined : -1, any ? undefined : SEPARATORS, strict, any ? (options.maxWhitespace ?? 16) : undefined] as const;
}

/** json_object is the schema {"type": "object"} with JSON Schema's defaults (any properties). */
export const JSON_OBJECT_SCHEMA: JsonSchema = { type: "object" };

/** A canonical key (object keys sorted) of a spec and its options, for the compiled-grammar cache. */
export function grammarKey(spec: GrammarSpec, options: JsonGrammarOptions = {}): string {
  return canonicalJson({ spec, ws: options.whitespace ?? "compact", max: options.maxWhitespace ?? 16 });
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

let ajv: Ajv2020 | undefined;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks a spec without a vocabulary (the api does, before it sends a request on): its shape, that a schema is a
 * valid JSON Schema (ajv, the 2020-12 meta-schema) and that xgrammar can build its grammar.
 * @param field how the caller names the spec in errors (default "grammar"); sub-fields follow the spec's own names.
 * @throws InvalidGrammarError naming the field at fault
 */
export async function checkGrammarSpec(spec: unknown, field = "grammar", options: JsonGrammarOptions = {}): Promise<GrammarSpec> {
  if (!isPlainObject(spec)) throw new InvalidGrammarError(field, "must be an object");
  const { Grammar } = xgrammar();
  switch (spec.type) {
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const { schema, strict } = spec;
      if (!isPlainObject(schema)) throw new InvalidGrammarError(`${field}.schema`, "must be a JSON Schema object");
      if (strict !== undefined && typeof strict !== "boolean") throw new InvalidGrammarError(`${field}.strict`, "must be a boolean");
      ajv ??= new Ajv2020({ strict: false, validateFormats: false });
      // "$schema" names the draft the client wrote for (zod and the openai client write one); the checks below read
      // every schema by the 2020-12 rules, as xgrammar does.
      const { $schema: _draft, ...body } = schema;
      if (!ajv.validateSchema(body)) {
        throw new InvalidGrammarError(`${field}.schema`, `not a valid JSON Schema: ${ajv.errorsText(ajv.errors, { dataVar: "schema" })}`);
      }
      const args = jsonSchemaArgs(schema, strict ?? false, options);
      try {
        const g = await xgrammarCall(() => Grammar.fromJSONSchema(...args));
        g.dispose();
      } catch (cause) {
        throw new InvalidGrammarError(`${field}.schema`, `cannot be turned into a grammar: ${(cause as Error).message}`, { cause });
      }
      return { type: "json_schema", schema, ...(strict === undefined ? {} : { strict }) };
    }
    case "structural_tag": {
      const { structuralTag } = spec;
      if (!isPlainObject(structuralTag)) throw new InvalidGrammarError(`${field}.structuralTag`, "must be an object");
      try {
        const g = await xgrammarCall(() => Grammar.fromStructuralTag(JSON.stringify(structuralTag)));
        g.dispose();
      } catch (cause) {
        throw new InvalidGrammarError(`${field}.structuralTag`, `cannot be turned into a grammar: ${(cause as Error).message}`, { cause });
      }
      return { type: "structural_tag", structuralTag };
    }
    default:
      throw new InvalidGrammarError(`${field}.type`, `must be "json_object", "json_schema" or "structural_tag", got ${JSON.stringify(spec.type)}`);
  }
}
