"""evaluate: offline metrics of the blend, its ablations and baselines, on held-out events.

    recjobs eval --date 2026-06-30 [--conf F]
    spark-submit ... jobs/evaluate.py --date 2026-06-30 --conf conf/cluster.yaml

For each protocol in ``eval.protocols`` (leave-last-out, next-day, random per-user split) the
stage splits ``events_clean`` into training events and held-out (user, item) pairs
(``jobs/evaluation``), writes the training events (and the catalogue and item vectors, which do
not depend on events) into an evaluation lake ``<lake>/_eval/<protocol>/``, rebuilds every
event-derived feature there with the same stage code as the nightly (sequences, user vectors,
topics, sentiment, rules, popularity), so that nothing held out leaks into training, and ranks
with the blend (``jobs/ranking``), its ablations (one per component of the component table that
has one, and ``no_decay``) and the baselines (decayed popularity, item co-occurrence, MLlib ALS
with implicit feedback) for the same users. Metrics (``jobs/common/metrics.py``) go to the
``metrics`` table, one ``replaceWhere ds = D AND protocol = P`` commit per protocol.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.config import with_values
from jobs.common.metrics import accuracy, beyond_accuracy
from jobs.common.runlog import StageRecord
from jobs.common.settings import EvalSettings, RankSettings
from jobs.evaluation import PRODUCT, split
from jobs.evaluation.baselines import als_baseline, cooccurrence_baseline, popularity_baseline
from jobs.ranking import blend_rank, candidate_features, excluded_pairs
from jobs.stages import stage_function
from schemas import columns as c
from schemas import tables as t
from schemas.components import ablations

log = logging.getLogger(__name__)

STAGE = "evaluate"
# The event-derived inputs of the ranker. encode_items is not among them (item text does not
# depend on events: the vectors are copied), nor keywords (used in explanations only).
FEATURE_STAGES = ("build_sequences", "encode_users", "fit_topics", "score_sentiment", "mine_rules")
# Without decay only these change; the rest is copied from the protocol's evaluation lake.
DECAY_STAGES = ("build_sequences", "encode_users", "fit_topics")
DECAY_FREE_TABLES = ("topic_models", "item_sentiment", "user_item_sentiment", "item_rules")
NO_DECAY_DAYS = 1e6


# ------------------------------------------------------------------------- evaluation lake
def _eval_cfg(cfg: Mapping, name: str, extra: Mapping | None = None, history_days: int = 0) -> Mapping:
    """The configuration of the evaluation lake ``<lake>/_eval/<name>``; its sequence window
    covers ``history_days`` (the training events' span) when that is longer than the nightly's,
    so every user with training history has a profile, as carrying forward gives them nightly."""
    root = f"{delta_io.lake_root(cfg)}/_eval/{name}"
    lookback = max(int(cfg["sequences"]["lookback_days"]), history_days)
    values = {"lake.root": root, "sequences.lookback_days": lookback, **(extra or {})}
    if cfg["topics"]["use_reviews"]:   # review texts are events: refit on this split's training data
        values["topics.refit_every_days"] = 1
    return with_values(cfg, values)


def build_features(spark: SparkSession, cfg: Mapping, ecfg: Mapping, train: DataFrame, fds: dt.date,
                   run_id: str, stages=FEATURE_STAGES, copy_from: Mapping | None = None) -> None:
    """Write the training events, the catalogue and the item vectors into the evaluation lake and
    run the event-derived feature stages there for ``fds`` (tables that ``stages`` leave out are
    copied from the evaluation lake ``copy_from``)."""
    delta_io.overwrite(train, ecfg, "events_clean")
    for name in ("items_clean", "item_embeddings"):
        delta_io.overwrite(delta_io.read_table(spark, cfg, name), ecfg, name)
    # the profiles come from the training events alone: no sequence of an earlier evaluation is
    # carried forward (the window covers the whole training history instead, see _eval_cfg)
    delta_io.overwrite(spark.createDataFrame([], t.USER_SEQUENCES), ecfg, "user_sequences")
    if copy_from is not None:
        for name in DECAY_FREE_TABLES:
            delta_io.overwrite(delta_io.read_table(spark, copy_from, name), ecfg, name)
        # the models those rows name live in the lake they came from (paths are lake-relative)
        for row in delta_io.read_table(spark, copy_from, "topic_models").select("path").collect():  # a row a fit
            delta_io.copy_tree(spark, delta_io.in_lake(copy_from, row["path"]), delta_io.in_lake(ecfg, row["path"]))
    for stage in stages:
        stage_function(stage)(spark, ecfg, fds, run_id, StageRecord())


def _no_decay_values(cfg: Mapping) -> dict:
    return {"sequences.half_life_days": {k: NO_DECAY_DAYS for k in cfg["sequences"]["half_life_days"]},
            "rank.popularity_half_life_days": NO_DECAY_DAYS, "rank.engagement_half_life_days": NO_DECAY_DAYS}


@contextmanager
def ranker_features(spark: SparkSession, cfg: Mapping, ecfg: Mapping, train: DataFrame, users: DataFrame,
                    fds: dt.date, run_id: str, stages=FEATURE_STAGES,
                    copy_from: Mapping | None = None) -> Iterator[DataFrame]:
    """Build an evaluation lake's features and yield the ranker's candidate features for
    ``users`` (persisted); the cached frames are released on exit."""
    build_features(spark, cfg, ecfg, train, fds, run_id, stages, copy_from)
    with candidate_features(delta_io.reader(spark, ecfg), fds, RankSettings.from_config(ecfg)) as data:
        feats = data.features.join(users, c.USER_ID).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            yield feats
        finally:
            feats.unpersist()


def evaluate_protocol(spark: SparkSession, cfg: Mapping, ds: dt.date, protocol: str, run_id: str) -> list[tuple]:
    """All models of one protocol; the ``metrics`` rows."""
    ev = EvalSettings.from_config(cfg)
    ks = sorted(int(k) for k in ev.ks)
    kmax = ks[-1]
    events = delta_io.read_table(spark, cfg, "events_clean")
    train, test, fds = split(events, protocol, ds, ev.relevant_types, ev.random_ratio, ev.seed)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if test.count() == 0:
            log.warning("evaluate %s: no held-out events for %s; skipped", protocol, ds)
            return []
        users = test.select(c.USER_ID).distinct()
        first = train.agg(F.min(c.EVENT_DATE)).first()[0]
        span = (fds - first).days + 1 if first else 0
        catalogue = delta_io.read_table(spark, cfg, "items_clean").count()
        vectors = delta_io.read_table(spark, cfg, "item_embeddings").select(c.ITEM_ID, "embedding")

        def score(models: Mapping[str, DataFrame]) -> list[tuple]:
            return _score_models(ds, protocol, run_id, models, test, train, ks, catalogue, vectors)

        ecfg = _eval_cfg(cfg, protocol, {"rank.top_n": kmax}, span)
        rs = RankSettings.from_config(ecfg)
        with ranker_features(spark, cfg, ecfg, train, users, fds, run_id) as feats:
            models: dict[str, DataFrame] = {PRODUCT: blend_rank(feats, rs)}
            for name, component in ablations().items():
                if name in ev.ablations:
                    models[f"{PRODUCT}_{name}"] = blend_rank(feats, rs, {**rs.weights, component: 0.0})
            read = delta_io.reader(spark, ecfg)
            excluded = excluded_pairs(read("events_clean"), read("user_item_sentiment"), fds, rs.exclude_types,
                                      rs.negative_threshold)
            if "popularity" in ev.baselines:
                models["popularity"] = popularity_baseline(train, users, excluded, fds, kmax,
                                                           rs.popularity_half_life_days, rs.popularity_lookback_days,
                                                           rs.type_weights)
            if "cooccurrence" in ev.baselines:
                models["cooccurrence"] = cooccurrence_baseline(train, users, excluded, kmax, ev.type_weights,
                                                               ev.cooccurrence_recent_items, ev.cooccurrence_max_basket)
            if "als" in ev.baselines:
                models["als"] = als_baseline(train, users, excluded, kmax, ev.type_weights, ev.als)
            rows = score(models)
        if "no_decay" in ev.ablations:
            ncfg = _eval_cfg(cfg, f"{protocol}-no_decay", {"rank.top_n": kmax, **_no_decay_values(cfg)}, span)
            with ranker_features(spark, cfg, ncfg, train, users, fds, run_id, DECAY_STAGES, copy_from=ecfg) as feats:
                rows += score({f"{PRODUCT}_no_decay": blend_rank(feats, RankSettings.from_config(ncfg))})
        return rows
    finally:
        train.unpersist()
        test.unpersist()


def _score_models(ds: dt.date, protocol: str, run_id: str, models: Mapping[str, DataFrame], test: DataFrame,
                  train: DataFrame, ks: list[int], catalogue: int, vectors: DataFrame) -> list[tuple]:
    rows = []
    for model, recs in models.items():
        t0 = time.monotonic()
        recs = recs.select(c.USER_ID, c.ITEM_ID, "rank").persist(StorageLevel.MEMORY_AND_DISK)
        acc = accuracy(recs, test, ks)
        users = int(acc.pop(("users", 0)))
        values = dict(acc)
        values.update(beyond_accuracy(recs, vectors, train, catalogue, ks))
        recs.unpersist()
        rows += [(ds, protocol, model, metric, k, float(v), users, run_id) for (metric, k), v in sorted(values.items())]
        log.info("evaluate %s %s: ndcg@%d %.4f recall@%d %.4f (%d users, %.1fs)", protocol, model, ks[0],
                 values[("ndcg", ks[0])], ks[0], values[("recall", ks[0])], users, time.monotonic() - t0)
    return rows


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Evaluate every configured protocol; write ``metrics``."""
    rec = rec or StageRecord()
    protocols = list(EvalSettings.from_config(cfg).protocols)
    summary: dict = {"protocols": {}}
    total = 0
    for protocol in protocols:
        t0 = time.monotonic()
        rows = evaluate_protocol(spark, cfg, ds, protocol, run_id)
        if rows:
            delta_io.replace_where(spark.createDataFrame(rows, t.METRICS), cfg, "metrics",
                                   f"ds = DATE'{ds.isoformat()}' AND protocol = '{protocol}'")
        total += len(rows)
        summary["protocols"][protocol] = {
            "seconds": round(time.monotonic() - t0, 1), "users": rows[0][6] if rows else 0,
            "table": {f"{m}.{metric}@{k}": round(v, 4) for _, _, m, metric, k, v, _, _ in rows}}
    summary["rows"] = total
    summary["line"] = "evaluation: " + ", ".join(f"{p} ({v['users']} users, {v['seconds']} s)"
                                                 for p, v in summary["protocols"].items())
    rec.finish(STAGE, {"protocols": {p: {k: v for k, v in s.items() if k != "table"}
                                     for p, s in summary["protocols"].items()}, "rows": total,
                       "line": summary["line"]}, rows_out=total)
    return summary


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
