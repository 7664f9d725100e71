import { Template } from "@huggingface/jinja";
import { ChatTemplateError, InvalidMessagesError } from "./errors.js";

/** One OpenAI-style content part; only text parts are rendered. */
export interface ChatContentPart {
  type: string;
  text?: string;
  [key: string]: unknown;
}

/** A chat message as templates expect it (`role`, `content`; extra fields such as `tool_calls` pass through). */
export interface ChatMessage {
  role: string;
  content: string | ChatContentPart[] | null;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant header so the model answers. Default true (HF's default is false; a server wants true). */
  addGenerationPrompt?: boolean;
  /** Passed to the template as `tools` (templates that support tool calling read it). */
  tools?: unknown[];
  /** More template variables (e.g. `date_string`); they cannot override messages or the special-token variables. */
  variables?: Record<string, unknown>;
}

/** Plain-text fallback for models with neither a template nor ChatML tokens. */
export const PLAIN_TEMPLATE =
  "{%- if bos_token %}{{- bos_token }}{%- endif %}" +
  "{%- for message in messages %}" +
  "{{- message['role'] | capitalize + ': ' + message['content'] + '\\n\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}";

/** The chat template of Meta-Llama-3-8B-Instruct's tokenizer_config.json. */
export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}" +
  "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}" +
  "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}" +
  "{{ content }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/** Normalizes OpenAI-style messages: content parts → one string (text parts joined), null → "". */
export function normalizeMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  if (!Array.isArray(messages)) throw new InvalidMessagesError("messages must be an array");
  return messages.map((m, i) => {
    if (typeof m !== "object" || m === null) throw new InvalidMessagesError(`messages[${i}] must be an object`);
    if (typeof m.role !== "string" || m.role.length === 0) throw new InvalidMessagesError(`messages[${i}].role must be a non-empty string`);
    let content = m.content;
    if (content === null || content === undefined) content = "";
    else if (Array.isArray(content)) {
      content = content
        .map((p, j) => {
          if (typeof p !== "object" || p === null || typeof p.type !== "string") {
            throw new InvalidMessagesError(`messages[${i}].content[${j}] must be a {type, ...} part`);
          }
          if (p.type !== "text") throw new InvalidMessagesError(`messages[${i}].content[${j}]: only text parts are supported, got "${p.type}"`);
          if (typeof p.text !== "string") throw new InvalidMessagesError(`messages[${i}].content[${j}].text must be a string`);
          return p.text;
        })
        .join("");
    } else if (typeof content !== "string") {
      throw new InvalidMessagesError(`messages[${i}].content must be a string, an array of text parts, or null`);
    }
    return { ...m, content };
  });
}

/** A parsed chat template (parsing once per tokenizer; rendering per request). */
export class ChatTemplate {
  readonly source: string;
  readonly #template: Template;

  constructor(source: string) {
    this.source = source;
    try {
      this.#template = new Template(source);
    } catch (cause) {
      throw new ChatTemplateError(`chat template does not parse: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    }
  }

  render(messages: readonly ChatMessage[], specialVars: Record<string, string | undefined>, options: ChatTemplateOptions = {}): string {
    const context: Record<string, unknown> = {
      ...options.variables,
      messages: normalizeMessages(messages),
      add_generation_prompt: options.addGenerationPrompt ?? true,
    };
    for (const [k, v] of Object.entries(specialVars)) if (v !== undefined) context[k] = v;
    if (options.tools !== undefined) context.tools = options.tools;
    try {
      return this.#template.render(context);
    } catch (cause) {
      throw new ChatTemplateError(`chat template failed to render: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    }
  }
}
