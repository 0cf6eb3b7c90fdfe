"""The learned blend: weights (and half-lives) fitted each night on the data's own hold-out.

Training rows are the candidate features of an earlier cut-off (built in a hold-out lake from the
events before it, with the same candidate generation and components as the nightly), labelled by
what each user did after it. Per candidate the blend inputs are standardised exactly as the
nightly standardises them, so a logistic regression on them gives weights in the same units as
the fixed ones: readable, and the reasons still come from the strongest weighted contribution.

What is kept is chosen on every labelled user (never the evaluation's test users) by
cross-fitting: the half-lives of ``engagement`` and ``popularity`` from a grid, then the best of
the fitted model and the weights searched on NDCG@10 itself (:mod:`jobs.ranking.search`; both
judged out of fold), the fixed weights and every single component (but a demoting one, which may
only lower scores: its learned weight is at most 0) by NDCG@10, so the blend can never fall
below its best single component there. Judging on every user
rather than on a held-back share makes the choice far less a matter of which few users were
held back: on a small hold-out a share of 25% is a few dozen users.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.config import with_values
from jobs.common.metrics import metric_column, user_metric_frame
from jobs.ranking.blend import standardise_and_blend, standardised
from jobs.ranking.features import HALF_LIFE_COMPONENTS, grid_column
from jobs.ranking.search import search_weights
from schemas import columns as c
from schemas.components import COMPONENTS, Component, clip_demoting, names

log = logging.getLogger(__name__)

LABEL = "label"
K = 10
# The search's default steps (rank.search_steps): added to one standardised input's weight at a time.
SEARCH_STEPS = (-1.0, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass
class FittedBlend:
    """What a night's fit chose, and the figures it was chosen by."""

    weights: dict[str, float]
    half_lives: dict[str, float]
    chosen: str                                   # learned | searched | fixed | single:<component>
    learner: str
    metrics: dict = field(default_factory=dict)   # validation NDCG of every candidate, AUC, counts
    model: object = None                          # the fitted MLlib model (kept and, for GBT, scoring
                                                  # only when ``chosen`` is ``learned``)


def label_rows(features: DataFrame, held: DataFrame) -> DataFrame:
    """``features`` with ``label`` = 1 for a candidate the user went on to (``held``: user, item)."""
    positives = held.select(c.USER_ID, c.ITEM_ID).distinct().withColumn(LABEL, F.lit(1.0))
    return (features.join(positives, [c.USER_ID, c.ITEM_ID], "left")
            .withColumn(LABEL, F.coalesce(F.col(LABEL), F.lit(0.0))))


def folds_of(validation_share: float) -> int:
    """Cross-fitting folds: each fold's fit leaves out about ``validation_share`` of the users."""
    return max(2, int(round(1.0 / validation_share)))


def _fold(col_user: str, folds: int, seed: int) -> Column:
    return F.pmod(F.xxhash64(F.col(col_user), F.lit(seed)), F.lit(folds)).cast("int")


def ndcg_of(rows: DataFrame, scores: Mapping[str, Column], truth: DataFrame, k: int = K) -> dict[str, float]:
    """NDCG@k of ranking each user's candidates by each of ``scores`` (desc, item id asc) against
    ``truth`` (user_id, item_id), all in one pass: ``{name: NDCG}``, with the definition of
    ``jobs.common.metrics`` (users in ``truth`` without candidates count 0)."""
    named = F.array(*[F.struct(F.lit(n).alias("_m"), col.cast("double").alias("_s")) for n, col in scores.items()])
    long = rows.select(c.USER_ID, c.ITEM_ID, F.explode(named).alias("_e")).select(c.USER_ID, c.ITEM_ID, "_e.*")
    order = Window.partitionBy("_m", c.USER_ID).orderBy(F.col("_s").desc_nulls_last(), F.col(c.ITEM_ID))
    top = long.withColumn("_r", F.row_number().over(order)).where(F.col("_r") <= k)
    per_user = user_metric_frame(top.withColumnRenamed("_r", "rank"), truth, [k], list(scores), by="_m")
    got = {r["_m"]: float(r["ndcg"] or 0.0)
           for r in per_user.groupBy("_m").agg(F.avg(metric_column("ndcg", k)).alias("ndcg")).collect()}   # a row per score
    return {n: got.get(n, 0.0) for n in scores}


def _sample(rows: DataFrame, negatives_per_user: int, seed: int) -> tuple[DataFrame, dict, DataFrame]:
    """Every positive and, per user, ``negatives_per_user`` negatives chosen by a seeded hash (the
    same ones whatever the partitioning), positives weighted to balance the classes; the counts
    of rows, positives and users; and the persisted frame under it (for the caller to release)."""
    rank = Window.partitionBy(c.USER_ID, LABEL).orderBy(F.xxhash64(F.col(c.ITEM_ID), F.lit(seed)), F.col(c.ITEM_ID))
    kept = rows.withColumn("_n", F.row_number().over(rank)) \
        .where((F.col(LABEL) == 1.0) | (F.col("_n") <= negatives_per_user)).drop("_n")
    kept = kept.persist(StorageLevel.MEMORY_AND_DISK)
    n = kept.agg(F.count("*").alias("training_rows"), F.sum(F.col(LABEL)).alias("positives"),
                 F.countDistinct(c.USER_ID).alias("users")).first()
    counts = {k: int(n[k] or 0) for k in ("training_rows", "positives", "users")}
    ratio = float(counts["training_rows"] - counts["positives"]) / max(float(counts["positives"]), 1.0)
    return kept.withColumn("_w", F.when(F.col(LABEL) == 1.0, F.lit(ratio)).otherwise(F.lit(1.0))), counts, kept


def fit_blend(rows: DataFrame, held: DataFrame, fixed_weights: Mapping[str, float], half_life_grid: Mapping,
              fixed_half_lives: Mapping[str, float], learner: str = "logistic", negatives_per_user: int = 30,
              validation_share: float = 0.25, reg_param: float = 0.01, seed: int = 11,
              components: Sequence[Component] = COMPONENTS, search_sweeps: int = 0,
              search_steps: Sequence[float] = SEARCH_STEPS) -> FittedBlend:
    """Fit the blend on labelled candidate rows (:func:`label_rows`), choose what to keep on
    every user by cross-fitting, and say how every candidate did.

    The users fall into ``folds_of(validation_share)`` seeded folds. The fitted model is judged
    out of fold (each fold ranked by a model fitted on the other folds), the fixed blend and each
    single component (nothing fitted) on the same users, so the choice rests on every labelled
    user rather than on a share of them; the model kept is then fitted on all of them.

    Args:
        rows: Candidate features with ``label`` and, for each half-life ``h`` of ``half_life_grid``
            and of ``fixed_half_lives``, the :func:`grid_column` columns of ``engagement`` and ``popularity``.
        held: The held-out (user_id, item_id) pairs (the truth NDCG is measured against).
        fixed_weights: The fixed blend (a candidate of the choice, and its reference) ...
        fixed_half_lives: ... with its half-lives (``{"engagement": days, "popularity": days}``).
        half_life_grid: ``{"engagement": [...], "popularity": [...]}`` in days.
        learner: ``logistic`` (readable weights) or ``gbt`` (gradient-boosted trees).
        search_sweeps: Sweeps of the coordinate ascent on NDCG@10 (:mod:`jobs.ranking.search`),
            another candidate of the choice, judged out of fold like the fitted model; 0: none.
        search_steps: What the search adds to one weight at a time.
    """
    from pyspark.ml.classification import GBTClassifier, LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array

    t0 = time.monotonic()
    folds = folds_of(validation_share)
    rows = rows.withColumn("_fold", _fold(c.USER_ID, folds, seed))
    truth = held.select(c.USER_ID, c.ITEM_ID)
    metrics: dict = {"validation_users": truth.select(c.USER_ID).distinct().count(), "folds": folds}
    # the fixed blend as configured, half-lives included: standardised over all candidates like tonight
    fixed = standardise_and_blend(use_half_lives(rows, fixed_half_lives), fixed_weights, components)

    # 1. half-lives: the fixed blend with one component's half-life changed at a time (a component
    # alone would not do: its recency ranks alike whatever the half-life); every variant in one
    # pass, nothing fitted, so every user judges them
    of = {comp.name: comp for comp in components}
    options = {comp: [float(h) for h in half_life_grid.get(comp) or []] for comp in HALF_LIFE_COMPONENTS if comp in of}
    fixed = standardised(fixed, {grid_column(comp, h): of[comp].transform(F.col(grid_column(comp, h)))
                                 for comp, hs in options.items() for h in hs})
    variants = {"fixed": F.col("score")}
    for comp, hs in options.items():
        w = F.lit(float(fixed_weights.get(comp, 0.0)))
        for h in hs:
            variants[grid_column(comp, h)] = F.col("score") + w * (F.col(f"z_{grid_column(comp, h)}") - F.col(f"z_{comp}"))
    first = ndcg_of(fixed, variants, truth)
    fixed_ndcg = first["fixed"]
    half_lives = {}
    for comp, hs in options.items():
        if not hs:
            continue
        # ties keep the configured half-life, then the first of the grid
        best = max(hs, key=lambda h: (first[grid_column(comp, h)], h == float(fixed_half_lives[comp]), -hs.index(h)))
        half_lives[comp] = best
        metrics[f"half_life_ndcg.{comp}"] = {f"{h:g}": round(first[grid_column(comp, h)], 6) for h in hs}
        rows = rows.withColumn(comp, F.col(grid_column(comp, best)))

    # 2. the blend inputs standardised over all training candidates, as the nightly does tonight
    zero = {comp.name: 0.0 for comp in components}
    rows = standardise_and_blend(rows, zero, components).drop("score").cache()
    z = [f"z_{n}" for n in names(components)]
    assembled = VectorAssembler(inputCols=z, outputCol="_x")

    def fit(part: DataFrame):
        kept, counts, sample = _sample(part, negatives_per_user, seed)
        if learner == "gbt":
            est = GBTClassifier(featuresCol="_x", labelCol=LABEL, weightCol="_w", maxIter=30, maxDepth=4, seed=seed)
        else:
            est = LogisticRegression(featuresCol="_x", labelCol=LABEL, weightCol="_w", regParam=reg_param,
                                     elasticNetParam=0.0, standardization=False, maxIter=100)
        model = est.fit(assembled.transform(kept))
        sample.unpersist()
        return model, counts

    def learned_score(model, frame: DataFrame) -> DataFrame:
        out = model.transform(assembled.transform(frame))
        if learner == "gbt":
            return out.withColumn("_learned", vector_to_array("probability")[1])
        return out.withColumn("_learned", _weighted(_weights_of(model, components)))

    # 3. out of fold: each fold ranked by the model fitted on the other folds
    scored = None
    for f in range(folds):
        fold_model, _ = fit(rows.where(F.col("_fold") != f))
        part = learned_score(fold_model, rows.where(F.col("_fold") == f))
        scored = part if scored is None else scored.unionByName(part)
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    auc = BinaryClassificationEvaluator(rawPredictionCol="rawPrediction", labelCol=LABEL).evaluate(scored)
    # a demoting component ranks nothing on its own
    singles = [comp.name for comp in components if not comp.demotes]
    results = ndcg_of(scored, {"learned": F.col("_learned"),
                               **{f"single:{n}": F.col(f"z_{n}") for n in singles}}, truth)
    results["fixed"] = fixed_ndcg
    scored.unpersist()

    # 4. coordinate ascent on NDCG@10 itself, one search per fold judged on the fold it left out
    # and one on every user (the weights kept), from the best single component or the fixed blend
    searched = None
    if search_sweeps:
        starts = {"fixed": dict(fixed_weights), **{f"single:{n}": {n: 1.0} for n in singles}}
        searched = search_weights(rows, truth, LABEL, _fold(c.USER_ID, folds, seed), folds, components, starts,
                                  search_steps, search_sweeps, K)
        results["searched"] = searched.out_of_fold_ndcg
        metrics["search"] = {"weights": searched.weights, "in_sample_ndcg": round(searched.in_sample_ndcg, 6),
                             "passes": searched.passes, "path": searched.path}

    # 5. the model kept: fitted on every user
    model, counts = fit(rows)
    metrics.update(counts)
    rows.unpersist()
    learned = _weights_of(model, components)
    # a tie goes to the simpler candidate: a search that left its start unchanged is that start
    order = ["learned", "fixed", *[f"single:{n}" for n in singles], *(["searched"] if searched else [])]
    chosen = max(order, key=lambda k: (results[k], -order.index(k)))
    if chosen == "learned":
        weights = learned
    elif chosen == "searched":
        weights = dict(searched.weights)
    elif chosen == "fixed":
        weights, half_lives = dict(fixed_weights), dict(fixed_half_lives)
    else:
        weights = {n: (1.0 if f"single:{n}" == chosen else 0.0) for n in names(components)}
    best_single = max((k for k in order if k.startswith("single:")), key=lambda k: results[k])
    metrics.update({"validation_auc": auc, "validation_ndcg": results[chosen], "ndcg": results,
                    "learned_weights": learned, "best_single": best_single.split(":", 1)[1],
                    "best_single_ndcg": results[best_single], "fixed_ndcg": results["fixed"],
                    "seconds": round(time.monotonic() - t0, 1)})
    log.info("learned blend: chose %s (NDCG@10 over %d users, %d folds: learned %.4f, fixed %.4f, best single %s "
             "%.4f)", chosen, metrics["validation_users"], folds, results["learned"], results["fixed"],
             best_single.split(":", 1)[1], results[best_single])
    return FittedBlend(weights, half_lives, chosen, learner, metrics, model)


def _weights_of(model, components: Sequence[Component]) -> dict[str, float]:
    """A fitted model's weights: logistic coefficients, or (trees have none) the GBT importances,
    which stand in for them in reasons and reports; a demoting component's is at most 0."""
    values = model.featureImportances if hasattr(model, "featureImportances") else model.coefficients
    return clip_demoting({n: float(w) for n, w in zip(names(components), values.toArray())}, components)


def _weighted(weights: Mapping[str, float]):
    return sum((F.lit(float(w)) * F.col(f"z_{n}") for n, w in weights.items()), F.lit(0.0))


def use_half_lives(features: DataFrame, half_lives: Mapping[str, float]) -> DataFrame:
    """``features`` with ``engagement`` / ``popularity`` taken from their grid columns of the given
    half-lives (the columns must have been built: ``candidate_features(..., half_life_grid)``)."""
    return features.withColumns({comp: F.col(grid_column(comp, h)) for comp, h in half_lives.items()
                                 if comp in HALF_LIFE_COMPONENTS})


def settings_with_half_lives(cfg: Mapping, half_lives: Mapping[str, float]) -> Mapping:
    """``cfg`` with learned half-lives of engagement and popularity in the rank settings."""
    keys = {"engagement": "rank.engagement_half_life_days", "popularity": "rank.popularity_half_life_days"}
    return with_values(cfg, {keys[k]: float(v) for k, v in half_lives.items() if k in keys})


def model_scorer(model, components: Sequence[Component] = COMPONENTS):
    """A ``score`` from a fitted classifier (the GBT learner) over the standardised components:
    the probability of the positive class, replacing the weighted sum."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array

    assembler = VectorAssembler(inputCols=[f"z_{n}" for n in names(components)], outputCol="_x")

    def score(scored: DataFrame) -> DataFrame:
        out = model.transform(assembler.transform(scored))
        return (out.withColumn("score", vector_to_array("probability")[1])
                .drop("_x", "rawPrediction", "probability", "prediction"))

    return score


def saved_scorer(path: str):
    """:func:`model_scorer` of a GBT model saved by a night's fit."""
    from pyspark.ml.classification import GBTClassificationModel

    return model_scorer(GBTClassificationModel.load(path))
