"""Training on tool-calling conversations: OpenAI's and TRL's shapes are accepted, rendered exactly as serving
renders the same conversation, and trained on the assistant's calls and replies (never on tool results)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tenfold.inference.prompts import Prompter
from tenfold.training.data import DatasetError, validate_jsonl
from tenfold.training.formats import parse_line
from tenfold.training.tokenize import count_tokens, tokenize_example

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
OPENAI_LINE = {"tools": TOOLS, "messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22C and sunny"},
    {"role": "assistant", "content": "It is 22C and sunny in Paris."}]}
TRL_LINE = {"tools": TOOLS, "messages": [  # TRL: arguments as an object, the tool message named
    {"role": "user", "content": "Weather in Rome?"},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                           "arguments": {"city": "Rome"}}}]},
    {"role": "tool", "name": "get_weather", "content": "rain"},
    {"role": "assistant", "content": "Rain in Rome."}]}


def test_both_shapes_are_accepted_as_messages() -> None:
    data = "".join(json.dumps(x) + "\n" for x in (OPENAI_LINE, TRL_LINE)).encode()
    summary = validate_jsonl(data)
    assert summary.format == "messages" and summary.n_examples == 2
    example = parse_line(2, TRL_LINE)
    assert example.messages[1].tool_calls == (("get_weather", '{"city":"Rome"}'),) and example.tools == tuple(TOOLS)


def test_training_renders_the_conversation_exactly_as_serving_does(tokenizer: Any) -> None:
    example = parse_line(1, OPENAI_LINE)
    tokenized = tokenize_example(tokenizer, example)
    prompter = Prompter("unused", tokenizer=tokenizer)
    served = prompter.chat_prompt(OPENAI_LINE["messages"], tools=TOOLS, add_generation_prompt=False)
    assert tokenized.input_ids == served
    # the prompt serving sends before the call is exactly the training sequence's prefix there
    before_call = prompter.chat_prompt(OPENAI_LINE["messages"][:1], tools=TOOLS)
    assert served[: len(before_call)] == before_call
    trained = tokenizer.decode([t for t, w in zip(tokenized.input_ids, tokenized.weights) if w > 0])
    assert '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>' in trained
    assert "It is 22C and sunny in Paris." in trained
    assert "22C and sunny<" not in trained and "Weather in Paris" not in trained  # results and prompts are input
    assert count_tokens(tokenizer, [example]).n_tokens == len(tokenized.input_ids)


@pytest.mark.parametrize("row, fragment", [
    ({"messages": OPENAI_LINE["messages"]}, "'tool_calls' need the functions in 'tools'"),
    ({"tools": TOOLS, "messages": [OPENAI_LINE["messages"][0], {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}]}, "'get_time', which is not in"),
    ({"tools": TOOLS, "messages": [OPENAI_LINE["messages"][0], {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{city"}}]}]}, "not JSON"),
    ({"tools": TOOLS, "messages": [OPENAI_LINE["messages"][0], {"role": "tool", "content": "x"}]},
     "must answer an assistant message's 'tool_calls'"),
    ({"functions": [{"name": "f"}], "messages": OPENAI_LINE["messages"]}, "deprecated function-calling shape"),
    ({"tools": TOOLS, "prompt": "q", "completion": "a"}, "'tools' go with a 'messages' conversation"),
    ({"tools": TOOLS + TOOLS, "messages": OPENAI_LINE["messages"]}, "two tools are named"),
])
def test_bad_tool_lines_name_the_problem(row: dict, fragment: str) -> None:
    with pytest.raises(DatasetError) as info:
        validate_jsonl((json.dumps(row) + "\n").encode())
    assert fragment in info.value.message, info.value.message
