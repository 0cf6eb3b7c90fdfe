"""rank_topn: candidates -> blended score -> exclusions, diversity -> per-user top-N with reasons.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/rank_topn.py --date 2026-06-30 --conf conf/cluster.yaml

The ranking itself is the library ``jobs/ranking`` (also what the evaluation ranks with).
Candidates: (a) blocked top-K of user vectors against the item matrix (``udfs/topk.py``; the
matrix goes to executors whole up to ``rank.broadcast_max_items`` rows, in shards beyond that,
merged with a second top-K), (b) association rules fired by the user's newest items, (c) decayed
popularity (all a cold user gets), (d) the items of the user's sequence. The components (declared
in ``schemas/components.py``) are standardised over all candidates and blended with
``rank.weights``. Purchased items and items the user reviewed negatively are excluded, near
neighbours of the latter demoted; at most ``rank.max_per_category`` items per category and, when
set, ``rank.max_engaged`` items the user already engaged with. Ties break on item id. Each row
carries a reason from its strongest component and that component's name (``reason_kind``).
Writes the ds partition of ``recommendations_staging``; the publish stage copies it into
``recommendations``.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from typing import Mapping

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.runlog import StageRecord
from jobs.common.settings import EvalSettings, LearnSettings, RankSettings
from jobs.evaluation import reserves_evaluation_half
from jobs.evaluation.holdout import events_source, learn_from_holdout
from jobs.ranking import blend_rank, candidate_features, default_list, reason_context, reasons, store
from jobs.ranking.features import without_vectors
from jobs.ranking.learn import settings_with_half_lives
from schemas import columns as c
from schemas.components import names

log = logging.getLogger(__name__)

STAGE = "rank_topn"


# What a blend taken from a ranker_models row carries (a fit of tonight adds its validation figures).
FIT_KEYS = ("chosen", "learner", "path")
SCORE_KEYS = ("validation_ndcg", "fixed_ndcg", "best_single", "best_single_ndcg")


def _from_fit(fit, source: str, keys=FIT_KEYS, **extra) -> dict:
    return {"source": source, "weights": dict(fit["weights"]), "half_lives": dict(fit["half_lives"]),
            "model_ds": fit[c.DS].isoformat(), **{k: fit[k] for k in keys}, **extra}


def blend_for(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str) -> dict:
    """The weights (and half-lives) to rank ds with, and where they come from.

    ``rank.model: fixed``: the fixed weights. ``learned``: a fit of tonight's hold-out unless an
    earlier night's fit is younger than ``rank.refit_every_days``; too few labels fall back to the
    newest earlier fit, then to the fixed weights. ``source`` says which (for runs and the report).
    """
    ls = LearnSettings.from_config(cfg)
    fixed = RankSettings.from_config(cfg).weights
    if ls.model == "fixed":
        return {"source": "fixed", "weights": fixed, "half_lives": {}, "model_ds": None}
    earlier = store.newest(spark, cfg, ds)
    # an earlier night's fit within the cadence serves; a re-run of a date fits again (same data,
    # same seeds: the same model)
    if earlier is not None and (ds - earlier[c.DS]).days < ls.refit_every_days:
        return _from_fit(earlier, "reused")
    t0 = time.monotonic()
    events = delta_io.read_table(spark, cfg, "events_clean")
    ev = EvalSettings.from_config(cfg)
    # the evaluation scores half the users with this very fit: their held-out events stay out of it
    reserve = reserves_evaluation_half(ls.train_protocol, ev.protocols)
    learned = learn_from_holdout(spark, cfg, events, ds, run_id, ev.relevant_types, events_source(spark, cfg),
                                 evaluation_seed=ev.seed if reserve else None)
    if learned.fitted is not None:
        row = store.record(spark, cfg, ds, learned, run_id, time.monotonic() - t0)
        return _from_fit(row, "learned", FIT_KEYS + SCORE_KEYS, labels=learned.labels)
    log.warning("no blend learned for %s: %s; falling back to %s", ds, learned.reason,
                "the fit of " + earlier[c.DS].isoformat() if earlier is not None else "the fixed weights")
    if earlier is not None:
        return _from_fit(earlier, "fallback_last", why=learned.reason)
    return {"source": "fallback_fixed", "weights": fixed, "half_lives": {}, "model_ds": None, "why": learned.reason}


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``recommendations_staging``."""
    rec = rec or StageRecord()
    blend = blend_for(spark, cfg, ds, run_id)
    cfg = settings_with_half_lives(cfg, blend["half_lives"])
    s = RankSettings.from_config(cfg)
    weights = blend["weights"]
    # a tree ensemble scores with the saved model itself (its importances only stand in for weights)
    scorer = store.scorer_of(cfg, blend.get("learner"), blend.get("chosen"), blend.get("path"))
    version = s.model_version + (f"/learned-{blend['model_ds']}" if blend["model_ds"] else "/fixed")
    read = delta_io.reader(spark, cfg)
    on_ds = F.col(c.DS) == F.lit(ds)
    terms = read("topic_terms").where(on_ds)
    with candidate_features(read, ds, s) as data:
        # the candidates are built once for the blend's standardisation and the ranking: cached
        # without their vectors, the item vector the reasons need joined back onto the top N
        feats = without_vectors(data.features).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            top = blend_rank(feats, s, weights, scorer=scorer).join(data.item_vectors, c.ITEM_ID, "left")
            ranked = reason_context(top, data.sequences, data.item_vectors, data.items, terms, s.recent_items, s.verbs)
            default = default_list(data.popularity, data.items, read("item_topics").where(on_ds), terms, s)
            out = (reasons(ranked, weights).unionByName(default, allowMissingColumns=True).select(
                F.lit(ds).alias(c.DS), c.USER_ID, F.col("rank").cast("int"), c.ITEM_ID, "score",
                F.struct(*[F.col(n).cast("double").alias(n) for n in names()]).alias("components"), "reason",
                "reason_kind", F.lit(version).alias("model_version"), F.lit(run_id).alias(c.RUN_ID)))
            delta_io.replace_where(out, cfg, "recommendations_staging", f"ds = DATE'{ds.isoformat()}'")
        finally:
            feats.unpersist()
        n_users = data.users.count()
    written = read("recommendations_staging").where(on_ds)
    n_default = written.where(F.col(c.USER_ID) == c.DEFAULT_USER).count()
    per_user = written.where(F.col(c.USER_ID) != c.DEFAULT_USER).groupBy(c.USER_ID).count()
    stats = per_user.agg(F.count("*").alias("users"), F.sum("count").alias("rows"),
                         F.sum((F.col("count") < s.top_n).cast("int")).alias("short")).first()
    summary = {"users": n_users, "users_with_recs": stats["users"], "rows": int(stats["rows"] or 0),
               "users_short_of_n": int(stats["short"] or 0) + (n_users - stats["users"]),
               "default_list": n_default, "top_n": s.top_n, "blend": blend,
               "path": delta_io.table_path(cfg, "recommendations_staging")}
    line = (f"ranked: {summary['rows']} recommendations for {summary['users_with_recs']} users "
            f"({summary['users_short_of_n']} short of {s.top_n}), and a default list of {n_default} for users "
            f"without history ({c.DEFAULT_USER}); blend: {blend['source']}"
            + (f" ({blend.get('chosen')}, model of {blend['model_ds']})" if blend["model_ds"] else ""))
    return rec.finish(STAGE, summary, rows_in=n_users, rows_out=summary["rows"], line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
