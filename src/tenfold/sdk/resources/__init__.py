"""The SDK's resources, grouped by concept; each verb builds a request description that the ``Tenfold`` or
``AsyncTenfold`` client executes (see ``tenfold.sdk._request.Resource``)."""

from tenfold.sdk.resources.admin import ApiKeys, Organizations, SpendLimits
from tenfold.sdk.resources.batches import AsyncBatches, Batches
from tenfold.sdk.resources.deployments import AsyncDeployments, Deployments
from tenfold.sdk.resources.files import Files
from tenfold.sdk.resources.fine_tuning import (
           AsyncJobs,
           Checkpoints,
           Evaluations,
           FineTuning,
           Jobs,
)
from tenfold.sdk.resources.inference import Chat, ChatCompletions, Completions
from tenfold.sdk.resources.job_events import AsyncEventFollower, EventFollower
from tenfold.sdk.resources.serving import Adapters, Models
from tenfold.sdk.resources.usage import Usage

__all__ = ["ApiKeys", "Organizations", "SpendLimits", "AsyncBatches", "Batches", "Files", "AsyncJobs", "Checkpoints",
           "Evaluations", "FineTuning", "Jobs", "Chat", "ChatCompletions", "Completions", "AsyncEventFollower",
           "EventFollower", "Adapters", "Models", "Usage", "Deployments", "AsyncDeployments"]
