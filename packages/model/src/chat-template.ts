/**
 * ChatML chat template (Jinja, Hugging Face `chat_template` conventions) for the generated models: each message
 * becomes `<|im_start|>{role}\n{content}<|im_end|>\n`; `add_generation_prompt` opens an assistant turn.
 * Content given as a list of parts (OpenAI style) contributes its text parts.
 */
export const CHATML_TEMPLATE =
  "{%- for message in messages -%}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' -}}" +
  "{%- if message['content'] is string -%}{{- message['content'] -}}" +
  "{%- else -%}{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}{%- endfor -%}" +
  "{%- endif -%}" +
  "{{- '<|im_end|>\\n' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";
