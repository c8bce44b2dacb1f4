"""A tiny job trained once per test module (checkpoints at steps 2 and 4, and a final adapter)."""

from __future__ import annotations

import pytest

from tests.api.helpers import train_tiny, wait_job


@pytest.fixture(scope="module")
def job(server):
    with server.client() as c:
        job = train_tiny(c, checkpoint_every=2, n_epochs=2)
        assert wait_job(c, job["id"])["status"] == "succeeded"
        return job["id"]
