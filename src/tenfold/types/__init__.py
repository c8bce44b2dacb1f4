"""Pydantic wire schemas shared by the server and the SDK, with OpenAI's field names exactly.

Request bodies: ``inference`` (chat and completions), ``fine_tuning`` (job create, evaluation, adapter
deploy, hyperparameter bounds), ``batches.BatchCreate``, ``admin`` and ``usage`` (their create/update
bodies); ``fields`` (the request base class, metadata, describing validation errors). Responses, one module
per REST noun: ``common`` (errors, list pages, deletions), ``files``, ``jobs``, ``adapters``, ``chat``,
``completions``, ``models`` (with ``HUB_BASE_MODELS``, the Hub names of registered base models), ``batches``,
``usage``, ``admin``, ``deployments``.

Names are importable from here (``from tenfold.types import FineTuningJob``); each module is imported only
when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "common": ("ResponseModel", "ErrorObject", "ErrorResponse", "ListResponse", "Deleted"),
    "files": ("FileObject", "FilePurpose", "FileFormat"),
    "jobs": ("FineTuningJob", "JobStatus", "JobError", "JobMethod", "MethodDetails", "JobProgress", "JobEvent",
             "JobCheckpoint", "CheckpointMetrics", "JobMetrics", "MetricsPoint", "JobEstimate", "Evaluation",
             "EvaluationResult", "TERMINAL_JOB_STATUSES"),
    "adapters": ("Adapter", "AdapterDeployPlan"),
    "chat": ("ChatCompletion", "ChatCompletionMessage", "Choice", "ChoiceLogprobs", "ChatCompletionTokenLogprob",
             "TopLogprob", "ChatCompletionChunk", "ChunkChoice", "ChoiceDelta"),
    "completions": ("Completion", "CompletionChoice", "CompletionLogprobs", "CompletionUsage",
                    "PromptTokensDetails", "CompletionTokensDetails", "FinishReason"),
    "models": ("Model", "HUB_BASE_MODELS"),
    "batches": ("Batch", "BatchStatus", "BatchRequestCounts", "BatchUsage", "InputTokensDetails",
                "OutputTokensDetails", "BatchError", "BatchErrors", "BatchOutputLine", "BatchLineResponse",
                "BatchLineError", "TERMINAL_BATCH_STATUSES"),
    "usage": ("UsageRecord", "UsageSummary", "UsageBucket", "UsageResult", "UsageAmounts", "SpendLimit",
              "SpendLimitUpdate"),
    "admin": ("Organization", "ApiKey", "Principal", "Health", "OrganizationCreate", "ApiKeyCreate"),
    "deployments": ("Deployment", "DeploymentCreate", "DeploymentUpdate", "Replica", "ScalingDecision",
                    "DeploymentState"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tenfold.types' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tenfold.types.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
