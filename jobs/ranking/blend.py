"""The blend: standardised components, weighted; the per-user top-N.

Which components there are, how each enters and its default weight come from the component table
(``schemas/components.py``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.settings import RankSettings
from schemas import columns as c
from schemas.components import COMPONENTS, Component


def blend_inputs(components: Sequence[Component] = COMPONENTS) -> dict[str, "F.Column"]:
    """Each component's blend input (its transform of the component column), by name."""
    return {comp.name: comp.transform(F.col(comp.name)) for comp in components}


def blend_stats(features: DataFrame, components: Sequence[Component] = COMPONENTS) -> dict:
    """The mean and standard deviation of every component's blend input over ``features`` (one
    aggregation): pass it to :func:`blend_rank` to rank the same rows with several weightings
    (ablations) without aggregating them again."""
    return input_stats(features, blend_inputs(components))


def input_stats(features: DataFrame, inputs: Mapping[str, "F.Column"]) -> dict:
    """``{"m_<name>": mean, "s_<name>": population std}`` of each of ``inputs`` over all rows."""
    return features.agg(*[F.avg(col).alias(f"m_{n}") for n, col in inputs.items()],
                        *[F.stddev_pop(col).alias(f"s_{n}") for n, col in inputs.items()]).first().asDict()  # one row


def standardise_and_blend(features: DataFrame, weights: Mapping[str, float],
                          components: Sequence[Component] = COMPONENTS, stats: Mapping | None = None) -> DataFrame:
    """Add ``z_<component>`` (z-score of the component's blend input over all rows; missing -> 0)
    and ``score`` = sum of weight * z, for every component of ``components``. ``stats``
    (:func:`blend_stats` of the same rows) saves the aggregation."""
    inputs = blend_inputs(components)
    out = standardised(features, inputs, stats)
    score = sum((F.lit(float(weights[n])) * F.col(f"z_{n}") for n in inputs), F.lit(0.0))
    return out.withColumn("score", score)


def standardised(features: DataFrame, inputs: Mapping[str, "F.Column"], stats: Mapping | None = None) -> DataFrame:
    """Add ``z_<name>`` for each of ``inputs``: its z-score over all rows (missing -> 0; a
    constant input -> 0), from one aggregation (none when ``stats``, :func:`input_stats` of
    the same rows and inputs, are given)."""
    stats = input_stats(features, inputs) if stats is None else stats
    zs = {}
    for n, col in inputs.items():
        mean, std = stats[f"m_{n}"], stats[f"s_{n}"]
        z = F.lit(0.0) if mean is None or not std else (col - F.lit(mean)) / F.lit(std)
        zs[f"z_{n}"] = F.coalesce(z, F.lit(0.0))
    return features.withColumns(zs)


def top_n(scored: DataFrame, n: int, max_per_category: int, max_engaged: int | None = None) -> DataFrame:
    """At most ``max_per_category`` per category and, of what remains, at most ``max_engaged``
    items the user already engaged with (``engaged_type`` set; None: no limit), then ranks 1..n by
    score desc, item id asc."""
    best = (F.col("score").desc(), F.col(c.ITEM_ID))
    per_cat = Window.partitionBy(c.USER_ID, c.CATEGORY).orderBy(*best)
    out = scored.withColumn("_c", F.row_number().over(per_cat)).where(F.col("_c") <= max_per_category)
    if max_engaged is not None:
        engaged = F.col("engaged_type").isNotNull()
        per_kind = Window.partitionBy(c.USER_ID, engaged).orderBy(*best)
        out = out.withColumn("_e", F.row_number().over(per_kind)).where(~engaged | (F.col("_e") <= max_engaged)).drop("_e")
    order = Window.partitionBy(c.USER_ID).orderBy(*best)
    return out.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n).drop("_c")


def blend_rank(features: DataFrame, settings: RankSettings, weights: Mapping[str, float] | None = None,
               components: Sequence[Component] = COMPONENTS, scorer=None, stats: Mapping | None = None) -> DataFrame:
    """Standardise and blend the components (the settings' fixed weights unless ``weights``), apply
    the category and engaged caps, keep the top N.

    ``scorer`` (a function of the standardised rows, e.g. a fitted GBT's) replaces the weighted sum
    as the score; the weights still decide the reasons. ``stats`` (:func:`blend_stats` of
    ``features``) saves the standardisation's aggregation."""
    scored = standardise_and_blend(features, settings.weights if weights is None else weights, components, stats)
    if scorer is not None:
        scored = scorer(scored)
    return top_n(scored, settings.top_n, settings.max_per_category, settings.max_engaged)
