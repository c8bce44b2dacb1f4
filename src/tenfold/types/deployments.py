"""Dedicated deployments on the wire: the create and update bodies and the deployment object with its
replicas (``/v1/deployments``).

Owns: field names, defaults and bounds (``min_replicas`` 0 allowed; ``max_replicas`` at least 1; targets
positive), the states (``CREATING``, ``READY``, ``UPDATING``, ``DELETING``, ``DELETED``, ``FAILED``) and the
replica view. Cross-field rules (``min_replicas`` ≤ ``max_replicas``) are the service's. Does not own:
serving (the model names ``dep-…`` and ``<job>#dep-…`` are inference's).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel
from tenfold.types.fields import Request

DeploymentState = Literal["CREATING", "READY", "UPDATING", "DELETING", "DELETED", "FAILED"]
ReplicaState = Literal["STARTING", "READY", "STOPPING", "STOPPED", "FAILED"]


class DeploymentCreate(Request):
    base_model: str = Field(min_length=1, max_length=256, description="A known name, a local folder or a Hugging "
                                                                      "Face id the registry loads.")
    hardware_profile: str | None = Field(default=None, min_length=1, max_length=64,
                                         description="cpu, or gpu.<kind> where present (default: a GPU if any)")
    engine: Literal["tenfold", "vllm"] = Field(default="tenfold", description="tenfold's own engine, or vLLM "
                                                "(installed beside tenfold; TENFOLD_VLLM_EXECUTABLE)")
    min_replicas: int = Field(default=1, ge=0, le=64, description="Replicas kept warm (0 allows scale to zero).")
    max_replicas: int = Field(default=1, ge=1, le=64)
    target_rps: float = Field(default=10.0, gt=0, le=1e6, description="Requests per second per replica.")
    target_latency_p95_ms: float = Field(default=5000.0, gt=0, le=3.6e6,
                                         description="p95 time to first token that triggers scaling up.")
    scale_down_window_s: float = Field(default=300.0, ge=0, le=86400,
                                       description="Seconds below target before a replica is removed (stabilisation).")
    display_name: str | None = Field(default=None, max_length=200)
    hf_token: str | None = Field(default=None, min_length=1, max_length=512, description="Used once to fetch a gated "
                                                                                         "model; never stored.")


class DeploymentUpdate(Request):
    min_replicas: int | None = Field(default=None, ge=0, le=64)
    max_replicas: int | None = Field(default=None, ge=1, le=64)
    target_rps: float | None = Field(default=None, gt=0, le=1e6)
    target_latency_p95_ms: float | None = Field(default=None, gt=0, le=3.6e6)
    scale_down_window_s: float | None = Field(default=None, ge=0, le=86400)
    display_name: str | None = Field(default=None, max_length=200)


class Replica(ResponseModel):
    id: str
    object: Literal["deployment.replica"] = "deployment.replica"
    state: ReplicaState
    healthy: bool
    pid: int | None = None
    endpoint: str | None = None
    placement: str | None = Field(default=None, description="where it runs: a local process, or a Ray actor and "
                                                             "its node")
    in_flight: int = 0
    adapters: list[str] = Field(default_factory=list, description="job ids of the adapters the replica holds")
    started_at: int
    ready_at: int | None = None


class ScalingDecision(ResponseModel):
    at: int
    replicas: int
    reason: str


class Deployment(ResponseModel):
    id: str
    object: Literal["deployment"] = "deployment"
    display_name: str | None = None
    base_model: str
    hardware_profile: str
    engine: str
    min_replicas: int
    max_replicas: int
    target_rps: float
    target_latency_p95_ms: float
    scale_down_window_s: float
    state: DeploymentState
    failure_reason: str | None = None
    desired_replicas: int
    replicas: list[Replica]
    last_decision: ScalingDecision | None = None
    adapters: list[str] = Field(default_factory=list, description="model names served on it: <job>#<deployment>")
    created_at: int
    updated_at: int
    deleted_at: int | None = None
    undelete_until: int | None = None


__all__ = ["DeploymentCreate", "DeploymentUpdate", "Deployment", "Replica", "ScalingDecision", "DeploymentState"]
