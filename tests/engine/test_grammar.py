"""Constrained decoding in the engine: masks equal llguidance's own, compiled grammars are cached by digest,
a Lark grammar bounds the tiny model's output exactly, and (slow) the embedded model at temperature 0.7
answers every test schema with JSON that validates whenever it finishes with "stop"."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
import torch

from tenfold.engine.async_engine import EngineOptions, LocalEngine
from tenfold.engine.grammar import Grammars, mask_logits
from tenfold.engine.types import Constraint, EngineError, GenerationRequest, SamplingParams
from tenfold.inference.prompts import Prompter
from tenfold.models.registry import load_tokenizer, resolve_base_model

from ._helpers import run_with_engine, text_of

OBJECT = Constraint("json_schema", json.dumps({"type": "object", "properties": {"a": {"type": "integer"}},
                                               "required": ["a"], "additionalProperties": False}))


@pytest.fixture(scope="module")
def grammars(tiny_path):
    return Grammars(load_tokenizer(tiny_path), 49152)


def test_masks_equal_llguidance_and_matchers_are_cached_by_digest(grammars):
    matcher = grammars.matcher(OBJECT)
    assert (grammars.misses, grammars.hits) == (1, 0)
    for token_text in ['{"', 'a', '":', "1"]:
        logits = torch.zeros(3, grammars.vocab_size)
        mask_logits(logits, [(1, matcher)], grammars.vocab_size)
        bias = torch.frombuffer(bytearray(matcher.compute_logit_bias()), dtype=torch.uint8)[: grammars.vocab_size]
        assert torch.equal(torch.isfinite(logits[1]), bias > 0)  # exactly the allowed tokens survive
        assert torch.isfinite(logits[0]).all() and torch.isfinite(logits[2]).all()  # other rows untouched
        ids = grammars.tokenizer.tokenize_str(token_text)
        assert matcher.consume_tokens(ids)
    grammars.matcher(OBJECT)
    assert (grammars.misses, grammars.hits) == (1, 1) and grammars.cached == 1


def test_bad_grammars_are_refused_with_the_reason(grammars):
    with pytest.raises(EngineError, match="Unimplemented keys"):
        grammars.check(Constraint("json_schema", json.dumps({"not": {"type": "string"}})))
    with pytest.raises(EngineError):
        grammars.check(Constraint("lark", "start: undefined_rule"))
    assert grammars.check(OBJECT) == []


def test_a_lark_grammar_bounds_what_the_tiny_model_says(tiny_path):
    grammar = Constraint("lark", 'start: ("yes" | "no") " because " /[a-z]{1,8}/')

    async def body(engine):
        outs = []
        for seed in range(6):
            req = GenerationRequest(f"g{seed}", list(range(100, 120)), SamplingParams(max_tokens=40, temperature=1.0,
                                                                                      seed=seed), constraint=grammar)
            outs.append([d async for d in engine.generate(req)])
        with pytest.raises(EngineError, match="unknown name"):  # compiled off the loop: raised by the stream
            [d async for d in engine.generate(GenerationRequest("bad", [1, 2], SamplingParams(max_tokens=4),
                                                                constraint=Constraint("lark", "start: nope")))]
        return outs

    import re

    for deltas in run_with_engine(tiny_path, body):
        assert deltas[-1].finish_reason == "stop"
        assert re.fullmatch(r"(yes|no) because [a-z]{1,8}", text_of(deltas)), text_of(deltas)


# The test schemas: nested objects, arrays with bounds, enums, numbers with bounds, required and
# optional properties, additionalProperties false.
EMBEDDED_SCHEMAS = [
    {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                     "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["city"], "additionalProperties": False}},
     "required": ["name", "address"], "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                               "minItems": 1, "maxItems": 4}},
     "required": ["tags"], "additionalProperties": False},
    {"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]},
                                      "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
     "required": ["sentiment", "confidence"], "additionalProperties": False},
    {"type": "object", "properties": {"year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                                      "title": {"type": "string", "maxLength": 40},
                                      "rating": {"type": "integer", "minimum": 1, "maximum": 5}},
     "required": ["year", "title"], "additionalProperties": False},
    {"type": "object", "properties": {"steps": {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9},
                                         "done": {"type": "boolean"}},
        "required": ["n", "done"], "additionalProperties": False}}},
     "required": ["steps"], "additionalProperties": False},
]
PROMPTS = ["Give a person and their address as JSON.", "List a few tags for a photo of a beach as JSON.",
           "Rate the sentiment of 'I love this!' as JSON.", "Describe a film as JSON.",
           "Give a short plan as JSON steps."]


@pytest.mark.slow
def test_the_embedded_model_always_validates_when_it_stops(model_cache):
    path = resolve_base_model("smollm2-135m-instruct", models_dir=model_cache)
    prompter = Prompter(path)

    async def main():
        engine = LocalEngine(path, "smollm2-135m-instruct", EngineOptions(torch_threads=2, kv_cache_bytes=256 << 20,
                                                                               dtype="float32"))
        await engine.start()
        try:
            async def one(i: int, schema: dict, prompt: str):
                ids = prompter.chat_prompt([{"role": "user", "content": prompt}])
                req = GenerationRequest(f"e{i}", ids, SamplingParams(max_tokens=120, temperature=0.7, seed=i),
                                        constraint=Constraint("json_schema", json.dumps(schema)))
                deltas = [d async for d in engine.generate(req)]
                return schema, text_of(deltas), deltas[-1].finish_reason

            return await asyncio.gather(*(one(i, s, p) for i, (s, p) in
                                          enumerate(list(zip(EMBEDDED_SCHEMAS, PROMPTS)) * 4)))
        finally:
            await engine.stop()

    results = asyncio.run(main())
    for schema, text, finish in results:  # the guarantee: every answer stops within 120 tokens, valid
        assert finish == "stop", (schema, text)
        jsonschema.validate(json.loads(text), schema)  # raises if it does not validate
