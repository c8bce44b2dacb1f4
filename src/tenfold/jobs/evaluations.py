"""Evaluating the base model and adapters side by side (``POST /v1/fine_tuning/evaluations``).

Owns: resolving each named model (the base model, ``<job>`` or ``<job>/step-N`` through
``tenfold.jobs.refs``) for the caller's organization, checking the examples, and running the scoring
(``tenfold.training.evaluate``: loss and exact match). Does not own: the scoring itself or wire shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenfold.context import Principal, ServerContext
from tenfold.errors import InvalidRequest, NotFound
from tenfold.jobs import refs
from tenfold.training.data import DatasetError


@dataclass(frozen=True)
class Evaluation:
    base_model: str
    n_examples: int
    results: list[dict[str, Any]]  # one per model, in the order asked: name, loss, exact match, counts


def evaluate(c: ServerContext, p: Principal, *, models: list[str], examples: list[Any], max_examples: int,
             max_new_tokens: int) -> Evaluation:
    from tenfold.models.registry import resolve_base_model
    from tenfold.training.evaluate import evaluate_models, parse_eval_rows

    base = c.settings.base_model
    try:
        rows = parse_eval_rows(examples)[:max_examples]
    except DatasetError as e:
        raise InvalidRequest(f"Invalid evaluation examples: {e}.", param="examples") from None
    adapters: list[tuple[str, str | None]] = []
    with c.db.session() as s:
        for name in models:
            if name == base:
                adapters.append((name, None))
                continue
            if not refs.is_ref(name):
                raise NotFound(f"'{name}' is neither the base model '{base}' nor one of your jobs or checkpoints "
                               "(<job id> or <job id>/step-N).", param="models", code="model_not_found")
            source = refs.resolve(s, organization_id=p.organization_id, name=name, param="models")
            adapters.append((name, source.path))
    path = resolve_base_model(base, models_dir=c.settings.models_dir)
    return Evaluation(base, len(rows), evaluate_models(path, adapters, rows, max_new_tokens=max_new_tokens))
