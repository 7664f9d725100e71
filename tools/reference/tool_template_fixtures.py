"""Renders a two-turn tool conversation (tools, an assistant's tool call, the tool's result) with transformers'
chat-template renderer (Python Jinja, transformers' own `tojson`), using the Hermes-style template of the tests
(tools/test-support/fixtures/hermes-tools.jinja), and writes the prompts of both turns as the fixture that
apps/api/test/tools.test.ts checks the api's prompts against (our template engine, @huggingface/jinja, and the
api's message shaping: `arguments` given to the template as an object).

    python tools/reference/tool_template_fixtures.py apps/api/test/fixtures/tool-loop-hf.json

Needs transformers (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import json
import pathlib
import sys

import transformers
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "tools/test-support/fixtures/hermes-tools.jinja").read_text()

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "The time in a zone.", "parameters": {"type": "object",
                                                                         "properties": {"tz": {"type": "string"}}}}},
]
FIRST = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris? Ünïcode ok."}]
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
RESULT = "18 C, sunny"
SECOND = FIRST + [
    # The api hands the template `arguments` as an object and null content as "" (templates test it for truth).
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": CALL}]},
    {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
]


def render(messages):
    return render_jinja_template([messages], tools=TOOLS, chat_template=TEMPLATE, add_generation_prompt=True)[0][0]


out = {
    "transformers": transformers.__version__,
    "tools": TOOLS,
    "first": {"messages": FIRST, "prompt": render(FIRST)},
    "call": CALL,
    "result": RESULT,
    "second": {"messages": SECOND, "prompt": render(SECOND)},
}
pathlib.Path(sys.argv[1]).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
