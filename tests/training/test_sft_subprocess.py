"""``python -m tenfold.training.main --spec spec.json`` end to end: the stdout event protocol, exit codes,
user errors and prompt stopping on SIGTERM with completed checkpoints left intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tenfold.training import checkpoints


def start(spec, tmp_path: Path) -> subprocess.Popen[str]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    return subprocess.Popen([sys.executable, "-m", "tenfold.training.main", "--spec", str(spec_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]  # every stdout line must be a JSON event


@pytest.mark.timeout(180)
def test_entry_point_emits_events_and_exits_zero(make_spec, tmp_path: Path) -> None:
    spec = make_spec(n_epochs=2, checkpoint_every=4)
    proc = start(spec, tmp_path)
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err
    events = events_of(out)
    assert [e["type"] for e in events] == ["started"] + ["metrics"] * 4 + ["checkpoint"] + ["metrics"] * 4 + \
        ["checkpoint", "done"]
    assert events[-1]["steps"] == 8 and Path(events[-1]["path"]).is_dir()


@pytest.mark.timeout(180)
def test_bad_dataset_is_a_user_error_with_exit_code_1(make_spec, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            {"messages": [{"role": "user", "content": "only a question"}]}]
    proc = start(make_spec(rows=rows), tmp_path)
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 1
    events = events_of(out)
    assert events == [{"type": "error", "message": "line 2: no assistant message: each example needs at least one "
                                                   "assistant message to learn from", "user_error": True}]


@pytest.mark.timeout(180)
def test_internal_error_is_not_a_user_error(make_spec, tmp_path: Path) -> None:
    proc = start(make_spec(base_model_path=str(tmp_path / "no-such-model")), tmp_path)
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 1
    (event,) = events_of(out)
    assert event["type"] == "error" and event["user_error"] is False and "internal error" in event["message"]
    assert "Traceback" in err


@pytest.mark.timeout(180)
def test_sigterm_stops_promptly_and_keeps_checkpoints(make_spec, tmp_path: Path) -> None:
    spec = make_spec(n_epochs=100, checkpoint_every=5)  # 400 steps: far longer than the test waits
    proc = start(spec, tmp_path)
    seen: list[dict[str, Any]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(json.loads(line))
        if sum(e["type"] == "checkpoint" for e in seen) >= 2:
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=60)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 143, err
    assert stopped_after < 10
    events = seen + events_of(rest)
    assert events[-1]["type"] == "cancelled" and events[-1]["step"] < 400
    assert not any(e["type"] == "done" for e in events)
    saved = checkpoints.list_checkpoints(spec.output_dir)
    reported = [e["step"] for e in events if e["type"] == "checkpoint"]
    assert [c.step for c in saved] == reported and len(saved) >= 2
    for c in saved:
        assert checkpoints.adapter_digest(c.path).startswith("sha256:")
        assert checkpoints.read_resume_state(c.path)["step"] == c.step
    assert not [p for p in Path(spec.output_dir).iterdir() if p.name.startswith(".tmp")]
