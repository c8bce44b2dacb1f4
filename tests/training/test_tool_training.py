"""Measured (slow): fine-tuning the embedded model on tool-calling conversations makes it call the right
function with valid arguments under ``tool_choice: "auto"`` on held-out prompts, against the base model's
rate, end to end through a real server (upload, train, deploy, the official SDK)."""

from __future__ import annotations

import io
import json
import random
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest

from tests.api.helpers import wait_job
from tests.conftest import start_server, stop_server

CITIES = ["Paris", "Rome", "Berlin", "Madrid", "Lisbon", "Vienna", "Oslo", "Dublin"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
PARAMS = {
    "get_weather": {"type": "object", "properties": {"city": {"enum": CITIES}}, "required": ["city"],
                    "additionalProperties": False},
    "convert_currency": {"type": "object", "properties": {
        "amount": {"type": "integer", "minimum": 1, "maximum": 10000},
        "source": {"enum": CURRENCIES}, "target": {"enum": CURRENCIES}},
        "required": ["amount", "source", "target"], "additionalProperties": False},
    "set_timer": {"type": "object", "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 120}},
                  "required": ["minutes"], "additionalProperties": False},
}
TOOLS = [{"type": "function", "function": {"name": name, "description": desc, "parameters": PARAMS[name]}}
         for name, desc in (("get_weather", "Current weather in a city"),
                            ("convert_currency", "Convert an amount between currencies"),
                            ("set_timer", "Start a countdown timer"))]
ASK = {
    "get_weather": ["What's the weather like in {city}?", "Is it raining in {city} right now?",
                    "How warm is it in {city} today?", "Tell me the weather in {city}.",
                    "Should I bring an umbrella in {city}?", "What's the forecast for {city}?"],
    "convert_currency": ["Convert {amount} {source} to {target}.", "How much is {amount} {source} in {target}?",
                         "I have {amount} {source}; what is that in {target}?",
                         "Change {amount} {source} into {target} for me.", "What do {amount} {source} buy in {target}?",
                         "{amount} {source} to {target}, please."],
    "set_timer": ["Set a timer for {minutes} minutes.", "Remind me in {minutes} minutes.",
                  "Start a {minutes} minute countdown.", "Wake me up in {minutes} minutes.",
                  "Count down {minutes} minutes for the pasta.", "I need a {minutes}-minute timer."],
}
HELD_OUT = {"get_weather": "Could you check the weather in {city} for me?",
            "convert_currency": "Please turn {amount} {source} into {target}.",
            "set_timer": "My tea needs {minutes} minutes; can you start a timer?"}


def _args(rng: random.Random, name: str) -> dict:
    if name == "get_weather":
        return {"city": rng.choice(CITIES)}
    if name == "convert_currency":
        source, target = rng.sample(CURRENCIES, 2)
        return {"amount": rng.choice([5, 20, 50, 100, 250, 1000]), "source": source, "target": target}
    return {"minutes": rng.choice([3, 5, 10, 15, 25, 45])}


def training_lines(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        name = list(ASK)[i % 3]
        args = _args(rng, name)
        lines.append({"tools": TOOLS, "messages": [
            {"role": "user", "content": rng.choice(ASK[name]).format(**args)},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}]})
    return lines


def held_out(seed: int = 99) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(name, HELD_OUT[name].format(**_args(rng, name))) for name in (list(ASK) * 4)[:10]]


def right_calls(client: openai.OpenAI, model: str) -> tuple[int, list[str]]:
    """Held-out prompts answered with one call to the right function (arguments validated), asked at once;
    and what each answer was."""
    def ask(item: tuple[str, str]) -> tuple[bool, str]:
        name, prompt = item
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], tools=TOOLS,
                                           tool_choice="auto", parallel_tool_calls=False, temperature=0,
                                           max_tokens=60)
        message = r.choices[0].message
        calls = message.tool_calls or []
        seen = f"{prompt!r} -> " + (", ".join(f"{c.function.name}({c.function.arguments})" for c in calls)
                                    or repr(message.content))
        if len(calls) == 1 and calls[0].function.name == name:
            jsonschema.validate(json.loads(calls[0].function.arguments), PARAMS[name])
            return True, seen
        return False, seen

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(ask, held_out()))
    return sum(ok for ok, _ in answers), [seen for _, seen in answers]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fine_tuning_on_tool_calls_makes_auto_calls_right(tmp_path_factory, model_cache):
    s = start_server(tmp_path_factory.mktemp("tool-training"), model_cache,
                     extra_env={"TENFOLD_BASE_MODEL": "smollm2-135m-instruct", "TENFOLD_TORCH_THREADS": "2"})
    try:
        client = openai.OpenAI(base_url=s.base_url, api_key=s.api_key, max_retries=0, timeout=600)
        base_rate, base_seen = right_calls(client, "smollm2-135m-instruct")
        data = "\n".join(json.dumps(x) for x in training_lines(64)).encode()
        f = client.files.create(file=("tools.jsonl", io.BytesIO(data)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=f.id, seed=3,
                                             hyperparameters={"n_epochs": 2, "batch_size": 8,
                                                              "learning_rate_multiplier": 2.0})
        with s.client() as c:
            assert wait_job(c, job.id, timeout=1200)["status"] == "succeeded"
            assert c.post("/adapters", json={"model": job.id}).status_code == 200
        tuned_rate, tuned_seen = right_calls(client, job.id)
    finally:
        stop_server(s)
    print(f"right function with valid arguments, tool_choice auto, 10 held-out prompts: base {base_rate}/10, "
          f"fine-tuned {tuned_rate}/10")
    assert tuned_rate >= 8 and tuned_rate > base_rate, "\n".join(["base:", *base_seen, "fine-tuned:", *tuned_seen])
