"""Batch input files are validated line by line (unit level, no server)."""

from __future__ import annotations

import json

import pytest

from tenfold.batch.validate import BatchFileError, parse_batch_file, validate_batch_file
from tests.batch.helpers import jsonl, line


def test_a_good_file_parses():
    rows = [line("a"), line("b", url="/v1/completions")]
    assert validate_batch_file(jsonl(rows)).n_requests == 2
    assert [x.custom_id for x in parse_batch_file(jsonl(rows))] == ["a", "b"]


@pytest.mark.parametrize("bad, where, words", [
    ([line("a"), line("a")], 2, "already used on line 1"),
    ([line("a"), {**line("b"), "method": "GET"}], 2, "method must be"),
    ([{**line("a"), "url": "/v1/embeddings"}], 1, "url must be one of"),
    ([line("a", temperature=5)], 1, "temperature"),
    ([line("a", stream=True)], 1, "stream"),
    ([{**line("a"), "custom_id": 3}], 1, "custom_id"),
    ([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}], 1, "messages"),
])
def test_bad_lines_name_the_line_and_the_problem(bad, where, words):
    with pytest.raises(BatchFileError) as e:
        parse_batch_file(jsonl(bad))
    assert e.value.line == where and words in str(e.value)


def test_not_json_and_empty():
    with pytest.raises(BatchFileError, match="line 2: invalid JSON"):
        parse_batch_file(json.dumps(line("a")).encode() + b"\n{nope\n")
    with pytest.raises(BatchFileError, match="empty"):
        parse_batch_file(b"\n\n")
