"""The follow loop's Ctrl-C contract and event formatting (no server: the SDK's ``fine_tuning.jobs.wait`` is
stubbed and hands over typed events and jobs)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import typer

from tenfold.cli.follow import event_line, follow_job, latest_checkpoint
from tenfold.types import FineTuningJob, JobEvent


class _Jobs:
    def __init__(self, behaviour):
        self.behaviour = behaviour

    def wait(self, job_id, *, on_event=None, on_job=None, poll=1.0, timeout=None, timeout_seconds=None):
        return self.behaviour(job_id, on_event, on_job)


class _Client:
    def __init__(self, behaviour):
        self.fine_tuning = SimpleNamespace(jobs=_Jobs(behaviour))


def _job(job_id: str, status: str, **fields) -> FineTuningJob:
    return FineTuningJob.model_validate({
        "id": job_id, "model": "m", "created_at": 0, "organization_id": "org-1", "status": status,
        "hyperparameters": {}, "method": {"type": "supervised"}, "training_file": "file-1", "seed": 0,
        "progress": {"step": 0}, **fields})


def _event(**fields) -> JobEvent:
    return JobEvent.model_validate({"id": "e1", "created_at": 0, "level": "info", "type": "message",
                                    "message": "", **fields})


def test_ctrl_c_stops_following_not_the_job(capsys):
    def interrupted(job_id, on_event, on_job):
        on_event(_event(message="Training started."))
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as info:
        follow_job(_Client(interrupted), "ftjob-x", bar=False)
    assert info.value.exit_code == 130
    out = capsys.readouterr().out
    assert "Training started." in out
    assert "stopped following ftjob-x; the job keeps running" in out
    assert "tenfold jobs cancel ftjob-x" in out


def test_ctrl_c_propagates_when_not_detaching():
    def interrupted(job_id, on_event, on_job):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        follow_job(_Client(interrupted), "ftjob-x", detach_on_interrupt=False)


def test_failed_job_summary_points_at_latest_checkpoint(capsys):
    def failed(job_id, on_event, on_job):
        return _job(job_id, "failed", error={"code": "training_error", "message": "out of memory"},
                    checkpoints=[f"{job_id}/step-10", f"{job_id}/step-2", f"{job_id}/step-30"])

    job = follow_job(_Client(failed), "ftjob-y")
    assert job.status == "failed"
    out = capsys.readouterr().out
    assert "job ftjob-y failed: out of memory" in out
    assert "tenfold deploy ftjob-y/step-30" in out


def test_metrics_event_line():
    line = event_line(_event(type="metrics", data={
        "step": 3, "total_steps": 12, "loss": 1.23456, "tokens_per_second": 1234.5, "eta_seconds": 75}))
    assert "step 3/12  loss 1.235  1,234 tok/s  eta 1:15" in line.plain
    assert latest_checkpoint(["j/step-9", "j/step-10"]) == "j/step-10"
