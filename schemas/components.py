"""The blend's components: one entry each, the one place a component is declared.

Everything that lists components derives from :data:`COMPONENTS`: the blend's inputs and default
weights (``jobs/ranking``), the reasons and ``recommendations.reason_kind``, the ``components``
struct of the recommendation tables (``schemas/tables.py``), the range checks of the
recommendations suite (``schemas/expectations.py``), the evaluation's ablations
(``jobs/evaluation``) and the report's reason counts.

A component's raw value is a column of the ranker's candidate features with the component's name;
its blend input is ``transform(raw)``, standardised over all candidates; its reason is
``reason`` with ``{placeholders}`` filled from the reason context columns of ``jobs/ranking``
(when one of them is NULL the reason falls back to :data:`FALLBACK`'s).

The default weights are the fixed blend, the fallback when no weights are learned from the data.
They were chosen by next-day Recall@10 on generated samples (seeds 7 and 13, 150 users, 9 days):
the best worst case among the mixes that keep the language model (semantic > 0). ``sequence``
came later and was not tuned: it enters the fixed blend with popularity's weight; ``neighbours``
came later still and enters with the rules' weight (the learned blend sets both from the data).
``disliked`` (the near neighbours of what the user reviewed negatively) was a fixed penalty
before; as a component its strength is learned like the others, never above 0.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Callable, Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F


def identity(col: Column) -> Column:
    """The raw value as it is."""
    return col


def log_affinity(col: Column) -> Column:
    """Affinities (shares in [0, 1]) enter as logs, like popularity, so that the additive blend acts
    as affinity x popularity: an item popular in a topic the user never touches does not outrank
    the favourites of the user's own topics."""
    return F.log(col + F.lit(1e-3))


def log_recency(col: Column) -> Column:
    """Recency in [0, 1] enters as log(1 + recency), which narrows the gap between an hour ago and
    yesterday relative to the gap between yesterday and last week."""
    return F.log1p(col)


@dataclass(frozen=True)
class Component:
    """One blend component.

    Attributes:
        name: Column of the candidate features, field of ``recommendations.components``,
            key of ``rank.weights`` and value of ``reason_kind``.
        description: What the raw value is (the schema's field comment).
        default_weight: Its weight in the fixed blend.
        reason: Reason template; ``{field}`` names a reason context column.
        ablation: The ``eval.ablations`` name that sets its weight to 0 (None: no ablation).
        transform: Raw value -> blend input (before standardising).
        bounds: Range the raw value must lie in (validated, error level), or None.
        demotes: The component may only lower a score: its weight is at most 0 (``rank.weights``
            refuses a positive one; a learned positive weight is set to 0), so it never explains.
    """

    name: str
    description: str
    default_weight: float
    reason: str
    ablation: str | None = None
    transform: Callable[[Column], Column] = identity
    bounds: tuple[float, float] | None = None
    demotes: bool = False

    @property
    def reason_fields(self) -> list[str]:
        """The context columns the reason template needs."""
        return [f for _, f, _, _ in string.Formatter().parse(self.reason) if f]


COMPONENTS: tuple[Component, ...] = (
    Component("semantic", "cosine of user and item vectors", 0.2,
              "similar to {anchor_title} you {anchor_verb}", "no_lm"),
    Component("sequence", "the sequence model's score: user vector x item output vector", 1.0,
              "because you {seq_verb} {seq_title}", "no_sequence"),
    Component("topic", "dot product of topic distributions", 0.5,
              "matches your interest in {user_terms}", "no_topics", log_affinity),
    Component("sentiment", "item's smoothed review sentiment", 0.2,
              "highly rated by reviewers", "no_sentiment"),
    Component("neighbours", "sum of the item-neighbour weights (EASE) from the user's items", 0.5,
              "often chosen with {nb_title}", "no_neighbours"),
    Component("rule", "best confidence of a fired rule", 0.5,
              "often bought after {rule_title}"),
    Component("popularity", "log(1 + decayed popularity)", 1.0,
              "popular in {item_terms}"),
    Component("engagement", "recency of the user's last event on the item, in [0, 1]", 2.0,
              "recently {engaged_verb} by you", "no_engagement", log_recency, (0.0, 1.0)),
    Component("category_affinity", "user's decayed share of weight in the item's category", 0.5,
              "you often browse {category}", None, log_affinity, (0.0, 1.0)),
    Component("disliked", "cosine to the nearest item the user reviewed negatively, where at least "
              "rank.negative_neighbour_threshold (else 0)", -1.0,
              "similar to {anchor_title} you {anchor_verb}", "no_disliked", demotes=True),
)
# The reason of a row whose strongest component's template lacks a value.
FALLBACK = "popularity"


def names(components: Sequence[Component] = COMPONENTS) -> list[str]:
    """The component names, in table order."""
    return [comp.name for comp in components]


def default_weights(components: Sequence[Component] = COMPONENTS) -> dict[str, float]:
    """``{name: default weight}``: the fixed blend."""
    return {comp.name: comp.default_weight for comp in components}


def clip_demoting(weights: dict[str, float], components: Sequence[Component] = COMPONENTS) -> dict[str, float]:
    """``weights`` with the positive weight of a demoting component set to 0."""
    demoting = {comp.name for comp in components if comp.demotes}
    return {n: (min(0.0, float(w)) if n in demoting else float(w)) for n, w in weights.items()}


def ablations(components: Sequence[Component] = COMPONENTS) -> dict[str, str]:
    """``{ablation name: component}`` for the components that have one."""
    return {comp.ablation: comp.name for comp in components if comp.ablation}


def by_name(name: str, components: Sequence[Component] = COMPONENTS) -> Component:
    """The component called ``name``."""
    for comp in components:
        if comp.name == name:
            return comp
    raise KeyError(f"unknown component {name!r}; components: {', '.join(names(components))}")
