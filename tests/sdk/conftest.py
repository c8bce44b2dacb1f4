"""SDK test fixtures: one ``Tenfold`` client on the shared test server (``tests/conftest.py``'s session
``server``, tiny model), and one small fine-tuning job trained through the SDK, shared by every SDK test."""

from __future__ import annotations

import json

import pytest

from tenfold.sdk import Tenfold

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"ANSWER: {a + b}"}]}
    for a in range(1, 5) for b in range(1, 4)
]
HYPER = {"n_epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 4, "lora_alpha": 8, "checkpoint_every": 1}


def jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture(scope="session")
def client(server):
    with Tenfold(base_url=server.base_url, api_key=server.api_key, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def base_model(client) -> str:
    return client.health().base_model


@pytest.fixture(scope="session")
def finished_job(client, base_model):
    """One small real training run (3 steps, a checkpoint each), followed with ``fine_tuning.jobs.wait``;
    returns (final job, events handed to ``on_event``, jobs handed to ``on_job``)."""
    uploaded = client.files.create(file=("sdk-train.jsonl", jsonl(ROWS)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base_model, training_file=uploaded.id, hyperparameters=HYPER, seed=3,
                                         suffix="sdk")
    assert job.status == "validating_files"
    events, polls = [], []
    final = client.fine_tuning.jobs.wait(job.id, on_event=events.append, on_job=polls.append, poll=0.2, timeout=300)
    return final, events, polls
