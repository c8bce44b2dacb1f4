"""How tools, calls and results are written into prompts (the default rendering for templates without tool
support, and the template's own where it has one) and read back out of generated text."""

from __future__ import annotations

import json

import pytest

from tenfold.inference.prompts import Prompter
from tenfold.models import tool_format
from tenfold.models.registry import load_tokenizer, resolve_base_model
from tests.conftest import TINY

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": CITY}}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "c2", "content": "rain"},
]


def test_the_default_rendering_for_a_template_without_tools():
    messages, tools = tool_format.to_template(CONVERSATION, TOOLS, native=False)
    assert tools is None and [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\n") and '"name": "get_weather"' in messages[0]["content"]
    assert messages[2]["content"] == ('<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
                                      '<tool_call>{"name":"get_weather","arguments":{"city":"Rome"}}</tool_call>')
    assert messages[3]["content"] == "<tool_response>sunny</tool_response>\n<tool_response>rain</tool_response>"
    assert tool_format.parse_calls(messages[2]["content"]) == [("get_weather", '{"city":"Paris"}'),
                                                               ("get_weather", '{"city":"Rome"}')]


def test_the_smollm2_template_renders_tool_conversations(model_cache):
    prompter = Prompter(resolve_base_model(TINY, models_dir=model_cache))  # SmolLM2's tokenizer and template
    assert not tool_format.template_supports_tools(prompter.tokenizer)
    text = prompter.chat_text(CONVERSATION, tools=TOOLS)
    assert "<tools>" in text and "<tool_response>rain</tool_response>" in text and text.endswith(
        "<|im_start|>assistant\n")


def test_a_template_with_tool_support_gets_tools_and_call_objects(model_cache):
    tokenizer = load_tokenizer(resolve_base_model(TINY, models_dir=model_cache))
    tokenizer.chat_template = (
        "{% if tools %}TOOLS={{ tools | tojson }}\n{% endif %}"
        "{% for m in messages %}[{{ m.role }}]{% if m.tool_calls %}{% for c in m.tool_calls %}"
        "CALL {{ c.function.name }} {{ c.function.arguments | tojson }};{% endfor %}{% else %}{{ m.content }}"
        "{% endif %}\n{% endfor %}")
    assert tool_format.template_supports_tools(tokenizer)
    text = Prompter("unused", tokenizer=tokenizer).chat_text(CONVERSATION, tools=TOOLS, add_generation_prompt=False)
    assert text.startswith("TOOLS=") and json.loads(text.split("\n")[0][6:])[0]["function"]["name"] == "get_weather"
    assert 'CALL get_weather {"city": "Paris"};CALL get_weather {"city": "Rome"};' in text
    assert "[tool]sunny" in text


@pytest.mark.parametrize("text, calls", [
    ('<tool_call>{"name":"f","arguments":{"a":1}}</tool_call>', [("f", '{"a":1}')]),
    (' <tool_call>{"name":"f","arguments":{}}</tool_call>\n', [("f", "{}")]),
    ("plain text", None),
    ('<tool_call>{"name":"f","arguments":{"a":1}}</tool_call> and more', None),
    ('<tool_call>{"name":"f","arguments":{"a":</tool_call>', None),
])
def test_calls_are_parsed_only_from_whole_call_blocks(text, calls):
    assert tool_format.parse_calls(text) == calls


def test_arguments_that_are_not_json_are_refused():
    bad = [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]
    with pytest.raises(tool_format.ToolFormatError, match="not JSON"):
        tool_format.to_template(bad, None, native=False)
