"""The evaluation library: splits, baselines and the names and order of the models compared.

The evaluate stage and the run report import it; it imports only ``jobs/common``,
``jobs/ranking``, ``udfs`` and ``schemas``.
"""
from __future__ import annotations

from typing import Sequence

from jobs.common.settings import BASELINES, PROTOCOLS, REBUILD_ABLATIONS
from jobs.evaluation.splits import (check_protocol, evaluation_half, reserves_evaluation_half, split,
                                    with_training_events)
from schemas.components import COMPONENTS, Component, ablations

PRODUCT = "blend"


def model_names(components: Sequence[Component] = COMPONENTS) -> tuple[str, ...]:
    """Display order of the models in tables: the product (the learned blend), the fixed blend, the
    product's ablations (one per component that has one, then the rebuilt ones), the baselines."""
    return (PRODUCT, f"{PRODUCT}_fixed", *[f"{PRODUCT}_{a}" for a in ablations(components)],
            *[f"{PRODUCT}_{a}" for a in REBUILD_ABLATIONS], *BASELINES)


MODELS = model_names()

__all__ = ["BASELINES", "MODELS", "PRODUCT", "PROTOCOLS", "check_protocol", "evaluation_half", "model_names",
           "reserves_evaluation_half", "split", "with_training_events"]
