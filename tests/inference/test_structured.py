"""Structured outputs on a live server (the tiny random model, so only grammar guarantees can make its answers
parse): JSON schema and JSON mode on chat and completions, streaming, n > 1, the Batch API, the official
SDK's ``parse``, how stop / logprobs / ignore_eos interact with a grammar, and every bad schema refused
with a 400 naming the field."""

from __future__ import annotations

import asyncio
import io
import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import TINY, wait_openai_batch

# Every path terminates: enums, booleans, bounded integers, bounded strings and arrays, no free keys.
SCHEMAS = [
    {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"},
                                      "n": {"type": "integer", "minimum": 0, "maximum": 99}},
     "required": ["colour", "ok", "n"], "additionalProperties": False},
    {"type": "object", "properties": {
        "user": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 9},
                                                  "tags": {"type": "array", "items": {"enum": ["a", "b"]},
                                                           "minItems": 1, "maxItems": 3}},
                 "required": ["id", "tags"], "additionalProperties": False},
        "note": {"type": "string", "maxLength": 8}},
     "required": ["user"], "additionalProperties": False},
]
MESSAGES = [{"role": "user", "content": "Describe a thing as JSON."}]


def fmt(schema: dict, name: str = "thing") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)


def valid(text: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def test_every_sampled_answer_validates_on_chat_and_completions(oai):
    for schema in SCHEMAS:
        r = oai.chat.completions.create(model=TINY, messages=MESSAGES, temperature=0.7, max_tokens=120, n=4,
                                        seed=5, response_format=fmt(schema))
        for choice in r.choices:
            assert choice.finish_reason == "stop" and valid(choice.message.content, schema), choice
        assert len({c.message.content for c in r.choices}) > 1  # n rows each follow the grammar, not one copy
        c = oai.completions.create(model=TINY, prompt="A thing:", temperature=0.7, max_tokens=120, n=2, seed=1,
                                   extra_body={"response_format": fmt(schema)})
        assert all(ch.finish_reason == "stop" and valid(ch.text, schema) for ch in c.choices), c


def test_streamed_answers_validate_and_json_mode_gives_objects(oai):
    schema = SCHEMAS[1]
    with oai.chat.completions.create(model=TINY, messages=MESSAGES, temperature=0.7, max_tokens=120, stream=True,
                                     response_format=fmt(schema)) as stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop" and valid(text, schema)
    r = oai.chat.completions.create(model=TINY, messages=MESSAGES, temperature=0.7, max_tokens=60, n=4, seed=2,
                                    response_format={"type": "json_object"})
    for choice in r.choices:  # only a length finish may leave unfinished JSON
        assert choice.finish_reason in ("stop", "length")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
        else:
            assert choice.message.content.startswith("{")


class Thing(BaseModel):
    colour: str = Field(json_schema_extra={"enum": ["red", "green"]})
    big: bool
    size: int = Field(ge=1, le=5)


def test_the_official_sdk_parse_returns_an_object(oai):
    r = oai.chat.completions.parse(model=TINY, messages=MESSAGES, response_format=Thing, temperature=0.7,
                                   max_tokens=120)
    thing = r.choices[0].message.parsed
    assert isinstance(thing, Thing) and thing.colour in ("red", "green") and 1 <= thing.size <= 5


def test_logprobs_ignore_eos_and_an_unconstrained_neighbour(oai, server):
    schema = SCHEMAS[0]
    r = oai.chat.completions.create(model=TINY, messages=MESSAGES, temperature=0, max_tokens=120, logprobs=True,
                                    top_logprobs=2, response_format=fmt(schema), extra_body={"ignore_eos": True})
    choice = r.choices[0]
    # ignore_eos does not run past a complete grammar; logprobs are the model's, one per token of the answer
    assert choice.finish_reason == "stop" and valid(choice.message.content, schema)
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in choice.logprobs.content)

    plain = {"model": TINY, "messages": MESSAGES, "temperature": 0, "max_tokens": 24,
             "extra_body": {"ignore_eos": True}}
    alone = oai.chat.completions.create(**plain).choices[0].message.content

    async def together():
        aoai = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)
        calls = [aoai.chat.completions.create(**plain)] + [
            aoai.chat.completions.create(model=TINY, messages=MESSAGES, temperature=0.7, max_tokens=120,
                                         response_format=fmt(s)) for s in SCHEMAS * 2]
        out = await asyncio.gather(*calls)
        await aoai.close()
        return out

    results = asyncio.run(together())
    assert results[0].choices[0].message.content == alone  # rows in the same batch are unaffected
    assert all(valid(res.choices[0].message.content, s) for res, s in zip(results[1:], SCHEMAS * 2))


def test_structured_output_in_the_batch_api(oai):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": TINY, "messages": MESSAGES, "max_tokens": 120, "temperature": 0.7,
                       "response_format": fmt(SCHEMAS[i % 2])}} for i in range(4)]
    f = oai.files.create(file=("b.jsonl", io.BytesIO("\n".join(json.dumps(x) for x in lines).encode())),
                         purpose="batch")
    batch = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_openai_batch(oai, batch.id)
    assert batch.status == "completed" and batch.request_counts.failed == 0
    out = [json.loads(x) for x in oai.files.content(batch.output_file_id).text.splitlines()]
    for line in out:
        i = int(line["custom_id"][1:])
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert valid(content, SCHEMAS[i % 2]), content


@pytest.mark.parametrize("response_format, extra, param, needle", [
    (fmt({"type": "nope"}), {}, "response_format.json_schema.schema", "Not a valid JSON Schema"),
    (fmt({"not": {"type": "string"}}), {}, "response_format.json_schema.schema", "not"),
    (fmt({"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}), {},
     "response_format.json_schema.schema", "if"),
    (fmt({"type": "string", "pattern": "^a(b"}), {}, "response_format.json_schema.schema", "regex"),
    (fmt({"$ref": "http://example.com/s.json"}), {}, "response_format.json_schema.schema", "http://example.com"),
    (fmt({"type": "object", "description": "x" * 70_000}), {}, "response_format.json_schema.schema", "bytes"),
    (fmt(json.loads("{\"type\":\"array\",\"items\":" * 30 + "{}" + "}" * 30)), {},
     "response_format.json_schema.schema", "nests more than"),
    (fmt(SCHEMAS[0], name="bad name!"), {}, "response_format.json_schema.name", None),
    ({"type": "json_schema"}, {}, "response_format.json_schema", None),
    ({"type": "xml"}, {}, "response_format", "type must be text, json_object or json_schema"),
    ({"type": "json_object"}, {"stop": ["}"]}, "stop", "would cut the structured answer"),
])
def test_bad_structured_requests_are_400s_naming_the_field(server, response_format, extra, param, needle):
    with server.client() as c:
        r = c.post("/chat/completions", json={"model": TINY, "messages": MESSAGES, "max_tokens": 8,
                                              "response_format": response_format, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    if needle:
        assert needle in err["message"], err


def metric(server, name: str) -> float:
    with server.client() as c:
        text = c.get(server.url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and f'base_model="{TINY}"' in line)


def test_a_new_schema_compiles_once_then_hits_the_cache(oai, server):
    schema = {"type": "object", "properties": {"code": {"enum": ["x1", "y2", "z3"]}}, "required": ["code"],
              "additionalProperties": False}
    compiles, hits = metric(server, "tenfold_engine_grammar_compiles_total"), \
        metric(server, "tenfold_engine_grammar_cache_hits_total")
    for seed in range(3):
        r = oai.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=20, seed=seed,
                                        response_format=fmt(schema, "codes"))
        assert valid(r.choices[0].message.content, schema)
    assert metric(server, "tenfold_engine_grammar_compiles_total") == compiles + 1
    assert metric(server, "tenfold_engine_grammar_cache_hits_total") == hits + 2
    assert metric(server, "tenfold_engine_grammar_compile_seconds_total") > 0
