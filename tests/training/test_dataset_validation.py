"""Validation of fine-tuning JSONL files: accepted formats and errors with 1-based line numbers."""

from __future__ import annotations

import json

import pytest

from tenfold.training.data import DatasetError, parse_jsonl, validate_jsonl

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def lines(*objs: object) -> bytes:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs).encode()


def test_conversational_file_is_summarized() -> None:
    data = lines(GOOD, GOOD, GOOD)
    summary = validate_jsonl(data)
    assert (summary.n_examples, summary.format, summary.n_bytes) == (3, "messages", len(data))


def test_prompt_completion_and_weights() -> None:
    data = lines({"prompt": "2+2=", "completion": "4", "weight": 0.5}, {"prompt": "a", "completion": "b"})
    examples = parse_jsonl(data)
    assert validate_jsonl(data).format == "prompt_completion"
    assert examples[0].weight == 0.5 and examples[1].weight == 1.0
    assert [m.role for m in examples[0].messages] == ["user", "assistant"]


def test_text_parts_trailing_blank_lines_and_message_weights() -> None:
    row = {"messages": [{"role": "system", "content": "be brief"},
                        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                        {"role": "assistant", "content": "x", "weight": 0},
                        {"role": "user", "content": "again"},
                        {"role": "assistant", "content": "y", "weight": 1}]}
    examples = parse_jsonl(lines(row) + b"\n\n  \n")
    assert len(examples) == 1
    msgs = examples[0].messages
    assert msgs[1].content == "ab" and msgs[2].weight == 0 and msgs[4].weight == 1


BAD_CASES = [
    (lines(GOOD, "{not json"), 2, "invalid JSON"),
    (lines(GOOD, GOOD, "[1, 2]"), 3, "expected a JSON object, got a list"),
    (lines({"body": "hello"}), 1, "no supported format has the keys ['body']"),
    (lines(GOOD, {"messages": []}), 2, "'messages' must be a non-empty list"),
    (lines({"messages": "hi"}), 1, "'messages' must be a non-empty list"),
    (lines({"messages": [{"content": "hi"}]}), 1, "messages[0] has no 'role'"),
    (lines({"messages": [{"role": "user"}]}), 1, "messages[0] has no 'content'"),
    (lines({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}), 1,
     "unknown role 'bot'"),
    (lines({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]}), 1,
     "must answer an assistant message's 'tool_calls'"),
    (lines({"messages": [{"role": "user", "content": "only a question"}]}), 1, "no assistant message"),
    (lines({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}), 1,
     "starts with an assistant message"),
    (lines({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "b"}]}), 1,
     "content must be a string or a list of text parts, got a number"),
    (lines({"messages": [{"role": "user", "content": [{"type": "image_url"}]},
                         {"role": "assistant", "content": "b"}]}), 1, "only text parts"),
    (lines({"prompt": 1, "completion": "b"}), 1, "'prompt' must be a string"),
    (lines({"prompt": "a"}), 1, "missing 'completion'"),
    (lines({"prompt": "a", "completion": ""}), 1, "'completion' is empty"),
    (lines({"prompt": "a", "completion": "b", "messages": []}), 1, "not both"),
    (lines(GOOD, {"prompt": "a", "completion": "b"}), 2, "use one format for the whole file"),
    (lines({**GOOD, "weight": 2}), 1, "'weight' must be a number from 0 to 1"),
    (lines({**GOOD, "weight": "high"}), 1, "'weight' must be a number from 0 to 1"),
    (lines({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0.5}]}),
     1, "'weight' must be 0 or 1"),
    (lines({"messages": [{"role": "user", "content": "a", "weight": 1}, {"role": "assistant", "content": "b"}]}),
     1, "only on assistant messages"),
    (lines(GOOD) + b"\n" + lines(GOOD), 2, "blank line"),
    (lines(GOOD) + b'{"messages": "\xff"}\n', 2, "not valid UTF-8"),
]


@pytest.mark.parametrize(("data", "line", "fragment"), BAD_CASES)
def test_errors_name_the_line(data: bytes, line: int, fragment: str) -> None:
    with pytest.raises(DatasetError) as info:
        validate_jsonl(data)
    assert info.value.line == line
    assert fragment in info.value.message
    assert str(info.value).startswith(f"line {line}: ")


@pytest.mark.parametrize("data", [b"", b"\n\n", b"   \n"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(DatasetError, match="empty"):
        validate_jsonl(data)


def test_message_format_matches_brief() -> None:
    with pytest.raises(DatasetError) as info:
        validate_jsonl(lines(GOOD, GOOD, {"messages": []}))
    assert str(info.value) == "line 3: 'messages' must be a non-empty list"


def test_unknown_purpose_is_rejected() -> None:
    with pytest.raises(DatasetError, match="purpose"):
        validate_jsonl(lines(GOOD), purpose="batch")
