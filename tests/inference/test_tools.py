"""Tool calling on a live server with unmodified clients: the official ``openai`` SDK (tools, tool_choice
required / named / auto, parallel or not, streamed tool-call deltas, a conversation carrying calls and tool
results, an adapter, the Batch API) and the OpenAI Agents SDK running an agent whose function tool must run.
The tiny random model cannot mean anything, so the grammar alone makes its calls valid; a slow test on the
embedded model checks the agent's final answer uses the tool's result."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Literal

import jsonschema
import openai
import pytest

from tests.api.helpers import train_tiny, wait_job
from tests.conftest import TINY, start_server, stop_server, wait_openai_batch

WEATHER = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
                                            "unit": {"enum": ["C", "F"]}},
           "required": ["city"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9},
                                        "b": {"type": "integer", "minimum": 0, "maximum": 9}},
       "required": ["a", "b"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "add", "description": "Add two digits", "parameters": ADD}}]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)


def check_calls(calls) -> list[str]:
    assert calls
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    return [c.function.name for c in calls]


def test_required_named_and_single_calls_always_validate(oai):
    r = oai.chat.completions.create(model=TINY, messages=MESSAGES, tools=TOOLS, tool_choice="required", n=3,
                                    temperature=0.8, max_tokens=200, seed=3)
    for choice in r.choices:  # parallel calls by default; each one valid
        if choice.finish_reason == "tool_calls":
            check_calls(choice.message.tool_calls)
            assert choice.message.content is None
        else:  # max_tokens cut a run of calls: the complete ones come back, the cut text as content
            assert choice.finish_reason == "length" and choice.message.tool_calls
            check_calls(choice.message.tool_calls)
    named = oai.chat.completions.create(model=TINY, messages=MESSAGES, tools=TOOLS, parallel_tool_calls=False,
                                        tool_choice={"type": "function", "function": {"name": "add"}},
                                        temperature=0.8, max_tokens=60)
    assert named.choices[0].finish_reason == "tool_calls"
    assert check_calls(named.choices[0].message.tool_calls) == ["add"]
    single = oai.chat.completions.create(model=TINY, messages=MESSAGES, tools=TOOLS, tool_choice="required",
                                         parallel_tool_calls=False, temperature=0.8, max_tokens=60)
    assert len(single.choices[0].message.tool_calls) == 1 and single.choices[0].finish_reason == "tool_calls"


def test_auto_answers_text_or_calls_and_none_answers_text(oai):
    seen = set()
    for seed in range(6):
        r = oai.chat.completions.create(model=TINY, messages=MESSAGES, tools=TOOLS, temperature=1.0, max_tokens=40,
                                        seed=seed, parallel_tool_calls=False)
        choice = r.choices[0]
        if choice.message.tool_calls:
            check_calls(choice.message.tool_calls)
            seen.add("call")
        else:
            assert not choice.message.content.lstrip().startswith("<")
            seen.add("text")
    assert seen  # either is allowed; both must be well formed
    r = oai.chat.completions.create(model=TINY, messages=MESSAGES, tools=TOOLS, tool_choice="none", max_tokens=8)
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "length"


def test_streamed_calls_arrive_as_deltas_and_accumulate_to_valid_calls(oai):
    calls: dict[int, dict] = {}
    finish = None
    with oai.chat.completions.create(model=TINY, messages=MESSAGES, tools=TOOLS, tool_choice="required",
                                     parallel_tool_calls=False, temperature=0.8, max_tokens=60,
                                     stream=True) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                for piece in choice.delta.tool_calls or ():
                    entry = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                    entry["id"] = piece.id or entry["id"]
                    if piece.function:
                        entry["name"] = piece.function.name or entry["name"]
                        entry["arguments"] += piece.function.arguments or ""
                finish = choice.finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS[calls[0]["name"]])
    assert calls[0]["id"].startswith("call_")


def test_a_conversation_with_calls_and_results_on_an_adapter(oai, server):
    with server.client() as c:
        job = train_tiny(c, checkpoint_every=0, n_epochs=1)
        assert wait_job(c, job["id"])["status"] == "succeeded"
        assert c.post("/adapters", json={"model": job["id"]}).status_code == 200
    for model in (TINY, job["id"]):
        first = oai.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS, tool_choice="required",
                                            parallel_tool_calls=False, temperature=0.8, max_tokens=60)
        message = first.choices[0].message
        check_calls(message.tool_calls)
        history = MESSAGES + [message.model_dump(exclude_none=True)] + [
            {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"} for call in message.tool_calls]
        follow = oai.chat.completions.create(model=model, messages=history, tools=TOOLS, tool_choice="none",
                                             max_tokens=6)
        assert follow.choices[0].message.content and follow.choices[0].message.tool_calls is None
        # the result is in the prompt: the follow-up's prompt is longer than the first by at least its text
        assert follow.usage.prompt_tokens > first.usage.prompt_tokens + 5


def test_tool_calls_in_the_batch_api(oai):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": TINY, "messages": MESSAGES, "tools": TOOLS, "tool_choice": "required",
                       "parallel_tool_calls": False, "max_tokens": 60, "temperature": 0.8}} for i in range(3)]
    f = oai.files.create(file=("b.jsonl", io.BytesIO("\n".join(json.dumps(x) for x in lines).encode())),
                         purpose="batch")
    batch = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_openai_batch(oai, batch.id)
    assert batch.status == "completed" and batch.request_counts.failed == 0
    for line in oai.files.content(batch.output_file_id).text.splitlines():
        choice = json.loads(line)["response"]["body"]["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        for call in choice["message"]["tool_calls"]:
            jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])


@pytest.mark.parametrize("extra, param, needle", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "'nope'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]},
     "tools.0.function.parameters", "Not a valid JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"not": {"type": "string"}}}}]},
     "tools", "not"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0.function.name", None),
    ({"tools": TOOLS + TOOLS[:1]}, "tools", "same function name"),
    ({"response_format": {"type": "json_object"}}, "response_format", "cannot be combined with tools"),
    ({"stop": ["x"]}, "stop", "would cut a call"),
    ({"tools": None, "tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id", "needs the id"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
     "messages.0.tool_calls", "only assistant"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages", "not JSON"),
])
def test_bad_tool_requests_are_400s_naming_the_field(server, extra, param, needle):
    body = {"model": TINY, "messages": MESSAGES, "tools": TOOLS, "max_tokens": 8, **extra}
    with server.client() as c:
        r = c.post("/chat/completions", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    if needle:
        assert needle in err["message"], err


def run_agent(base_url: str, api_key: str, model: str) -> tuple[list[str], str]:
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    ran: list[str] = []

    @function_tool
    def get_secret(topic: Literal["fruit", "city"]) -> str:
        """Return the secret word about a topic."""
        ran.append(topic)
        return "The secret word is pineapple."

    async def main() -> str:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)
        agent = Agent(name="secret-keeper", instructions="Use the tool, then answer with the secret word.",
                      tools=[get_secret], model=OpenAIChatCompletionsModel(model=model, openai_client=client),
                      model_settings=ModelSettings(tool_choice="required", max_tokens=60, temperature=0))
        result = await Runner.run(agent, "What is the secret word about fruit?", max_turns=4)
        await client.close()
        return result.final_output

    return ran, asyncio.run(main())


def test_the_openai_agents_sdk_runs_a_function_tool(server):
    ran, final = run_agent(server.base_url, server.api_key, TINY)
    assert ran and set(ran) <= {"fruit", "city"}  # the function really ran, with valid arguments
    assert isinstance(final, str) and final  # then the model answered (tool_choice reset to auto)


@pytest.mark.slow
def test_an_agent_on_the_embedded_model_answers_with_the_tools_result(tmp_path_factory, model_cache):
    s = start_server(tmp_path_factory.mktemp("agents-home"), model_cache, role="api",
                     extra_env={"TENFOLD_BASE_MODEL": "smollm2-135m-instruct", "TENFOLD_TORCH_THREADS": "2"})
    try:
        ran, final = run_agent(s.base_url, s.api_key, "smollm2-135m-instruct")
    finally:
        stop_server(s)
    assert ran == ["fruit"] and "pineapple" in final.lower(), (ran, final)
