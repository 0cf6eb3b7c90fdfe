"""evaluate: offline metrics of the blend, its ablations and baselines, on held-out events.

    recjobs eval --date 2026-06-30 [--conf F]
    spark-submit ... jobs/evaluate.py --date 2026-06-30 --conf conf/cluster.yaml

For each protocol in ``eval.protocols`` (leave-last-out, next-day, random per-user split) the
stage splits ``events_clean`` into training events and held-out (user, item) pairs, writes the
training events (and the catalogue and item vectors, which do not depend on events) into an
evaluation lake ``<lake>/_eval/<protocol>/``, rebuilds every event-derived feature there with
the same stage code as the nightly (sequences, user vectors, topics, sentiment, keywords, rules,
popularity), so that nothing held out leaks into training, and ranks with the blend, its
ablations and the baselines (decayed popularity, item co-occurrence, MLlib ALS with implicit
feedback) for the same users. Metrics (``jobs/common/metrics.py``) go to the ``metrics`` table,
one ``replaceWhere ds = D AND protocol = P`` commit per protocol.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.config import with_values
from jobs.common.errors import ConfigError
from jobs.common.metrics import ALL_METRICS, accuracy, beyond_accuracy
from jobs.common.runlog import StageRecord
from jobs.stages import stage_function
from schemas import columns as c
from schemas import tables as t

log = logging.getLogger(__name__)

STAGE = "evaluate"
PROTOCOLS = ("leave_last_out", "next_day", "random_split")
# The event-derived inputs of the ranker. encode_items is not among them (item text does not
# depend on events: the vectors are copied), nor keywords (used in explanations only).
FEATURE_STAGES = ("build_sequences", "encode_users", "fit_topics", "score_sentiment", "mine_rules")
# Without decay only these change; the rest is copied from the protocol's evaluation lake.
DECAY_STAGES = ("build_sequences", "encode_users", "fit_topics")
DECAY_FREE_TABLES = ("topic_models", "item_sentiment", "user_item_sentiment", "item_rules")
ABLATION_WEIGHT = {"no_lm": "semantic", "no_topics": "topic", "no_sentiment": "sentiment", "no_engagement": "engagement"}
BASELINES = ("popularity", "cooccurrence", "als")
# Display order of the models in tables: the product, its ablations, the baselines.
MODELS = ("blend", "blend_no_lm", "blend_no_decay", "blend_no_topics", "blend_no_sentiment",
          "blend_no_engagement", *BASELINES)
NO_DECAY_DAYS = 1e6


# ---------------------------------------------------------------------------------- splits
def split(events: DataFrame, protocol: str, ds: dt.date, cfg: Mapping) -> tuple[DataFrame, DataFrame, dt.date]:
    """(training events, held-out (user_id, item_id, event_id, event_ts), date to build features for)."""
    check_protocol(protocol)
    ev = cfg["eval"]
    relevant = F.col(c.EVENT_TYPE).isin(list(ev["relevant_types"]))
    events = events.where(F.col(c.EVENT_DATE) <= F.lit(ds))
    held_cols = [c.USER_ID, c.ITEM_ID, c.EVENT_ID, c.EVENT_TS]
    if protocol == "leave_last_out":
        last = Window.partitionBy(c.USER_ID).orderBy(F.col(c.EVENT_TS).desc(), F.col(c.EVENT_ID).desc())
        test = events.where(relevant).withColumn("_r", F.row_number().over(last)).where("_r = 1").select(*held_cols)
        cut = test.select(c.USER_ID, F.col(c.EVENT_TS).alias("_held_ts"))
        # the held-out event and everything the user did from that moment on leave training
        train = (events.join(cut, c.USER_ID, "left")
                 .where(F.col("_held_ts").isNull() | (F.col(c.EVENT_TS) < F.col("_held_ts"))).drop("_held_ts"))
        return train, test, ds
    if protocol == "next_day":
        train = events.where(F.col(c.EVENT_DATE) < F.lit(ds))
        test = events.where(relevant & (F.col(c.EVENT_DATE) == F.lit(ds))).select(*held_cols)
        return train, test, ds - dt.timedelta(days=1)
    # random_split: hold out a seeded share of each user's relevant (user, item) pairs, with
    # every event of a held-out pair (views included), so training never saw the user with them
    bucket = F.pmod(F.xxhash64(F.col(c.USER_ID), F.col(c.ITEM_ID), F.lit(int(ev["seed"]))), F.lit(10_000))
    held = (events.where(relevant).select(c.USER_ID, c.ITEM_ID).distinct()
            .where(bucket < F.lit(int(float(ev["random_ratio"]) * 10_000))))
    train = events.join(held, [c.USER_ID, c.ITEM_ID], "left_anti")
    test = events.where(relevant).join(held, [c.USER_ID, c.ITEM_ID]).select(*held_cols)
    return train, test, ds


def check_protocol(protocol: str) -> None:
    """ConfigError naming ``eval.protocols`` unless ``protocol`` is one of PROTOCOLS."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"eval.protocols: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


# ------------------------------------------------------------------------------- baselines
def _top_k(scored: DataFrame, k: int, score: str) -> DataFrame:
    order = Window.partitionBy(c.USER_ID).orderBy(F.col(score).desc(), F.col(c.ITEM_ID))
    return (scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)
            .select(c.USER_ID, c.ITEM_ID, "rank"))


def weighted_counts(events: DataFrame, cfg: Mapping, *keys: str) -> DataFrame:
    """``keys`` + ``_w``: the sum of ``sequences.type_weights`` of the events of each group."""
    from jobs.build_sequences import lookup

    weight = lookup(cfg["sequences"]["type_weights"], F.col(c.EVENT_TYPE))
    return events.groupBy(*keys).agg(F.sum(weight).alias("_w"))


def popularity_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, cfg: Mapping, fds: dt.date,
                        k: int) -> DataFrame:
    """Decayed popularity (the rank stage's own), the same list for everyone minus their exclusions."""
    from jobs.rank_topn import decayed_popularity

    rk = cfg["rank"]
    end = dt.datetime.combine(fds + dt.timedelta(days=1), dt.time())
    recent = train.where(F.col(c.EVENT_DATE) > F.lit(fds - dt.timedelta(days=int(rk["popularity_lookback_days"]))))
    pop = decayed_popularity(recent, end, float(rk["popularity_half_life_days"]), cfg["sequences"]["type_weights"])
    head = pop.orderBy(F.col("popularity").desc(), F.col(c.ITEM_ID)).limit(k * 3)   # room for exclusions
    cands = users.crossJoin(head).join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti")
    return _top_k(cands, k, "popularity")


def cooccurrence_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, cfg: Mapping, k: int) -> DataFrame:
    """Items that share a daily basket (user, day) with the user's most recent items, by count."""
    ev = cfg["eval"]
    basket = weighted_counts(train, cfg, c.USER_ID, c.EVENT_DATE, c.ITEM_ID)
    in_basket = Window.partitionBy(c.USER_ID, c.EVENT_DATE).orderBy(F.col("_w").desc(), F.col(c.ITEM_ID))
    basket = (basket.withColumn("_b", F.row_number().over(in_basket))
              .where(F.col("_b") <= int(ev["cooccurrence_max_basket"])).select(c.USER_ID, c.EVENT_DATE, c.ITEM_ID))
    a, b = basket.withColumnRenamed(c.ITEM_ID, "_a"), basket.withColumnRenamed(c.ITEM_ID, "_b")
    pairs = (a.join(b, [c.USER_ID, c.EVENT_DATE]).where(F.col("_a") != F.col("_b"))
             .groupBy("_a", "_b").agg(F.count("*").alias("_n")))
    newest = Window.partitionBy(c.USER_ID).orderBy(F.col("_last").desc(), F.col(c.ITEM_ID))
    recent = (train.join(users, c.USER_ID).groupBy(c.USER_ID, c.ITEM_ID).agg(F.max(c.EVENT_TS).alias("_last"))
              .withColumn("_r", F.row_number().over(newest))
              .where(F.col("_r") <= int(ev["cooccurrence_recent_items"])).select(c.USER_ID, F.col(c.ITEM_ID).alias("_a")))
    scored = (recent.join(pairs, "_a").groupBy(c.USER_ID, F.col("_b").alias(c.ITEM_ID)).agg(F.sum("_n").alias("_s"))
              .join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti"))
    return _top_k(scored, k, "_s")


def als_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, cfg: Mapping, k: int) -> DataFrame:
    """MLlib ALS with implicit feedback on event-type-weighted (user, item) counts."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS

    conf = cfg["eval"]["als"]
    ratings = weighted_counts(train, cfg, c.USER_ID, c.ITEM_ID)
    u_idx = StringIndexer(inputCol=c.USER_ID, outputCol="_u", handleInvalid="skip").fit(ratings)
    i_idx = StringIndexer(inputCol=c.ITEM_ID, outputCol="_i").fit(ratings)
    data = i_idx.transform(u_idx.transform(ratings)).select(F.col("_u").cast("int"), F.col("_i").cast("int"), "_w")
    model = ALS(rank=int(conf["rank"]), regParam=float(conf["reg_param"]), alpha=float(conf["alpha"]),
                maxIter=int(conf["max_iter"]), seed=int(conf["seed"]), implicitPrefs=True, userCol="_u",
                itemCol="_i", ratingCol="_w", coldStartStrategy="drop", nonnegative=True).fit(data)
    subset = u_idx.transform(users).select(F.col("_u").cast("int"))
    n_items = k * 3
    recs = model.recommendForUserSubset(subset, n_items).select("_u", F.posexplode("recommendations").alias("_p", "_r"))
    umap = u_idx.transform(ratings.select(c.USER_ID).distinct()).select(F.col("_u").cast("int"), c.USER_ID)
    imap = i_idx.transform(ratings.select(c.ITEM_ID).distinct()).select(F.col("_i").cast("int"), c.ITEM_ID)
    scored = (recs.select("_u", F.col("_r._i").alias("_i"), F.col("_r.rating").alias("_s"))
              .join(umap, "_u").join(imap, "_i").select(c.USER_ID, c.ITEM_ID, "_s")
              .join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti"))
    return _top_k(scored, k, "_s")


# ------------------------------------------------------------------------- evaluation lake
def _eval_cfg(cfg: Mapping, name: str, extra: Mapping | None = None) -> Mapping:
    root = f"{delta_io.lake_root(cfg)}/_eval/{name}"
    values = {"lake.root": root, **(extra or {})}
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
    if copy_from is not None:
        for name in DECAY_FREE_TABLES:
            delta_io.overwrite(delta_io.read_table(spark, copy_from, name), ecfg, name)
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
    from jobs.rank_topn import candidate_features

    build_features(spark, cfg, ecfg, train, fds, run_id, stages, copy_from)
    feats, parts = candidate_features(spark, ecfg, fds)
    feats = feats.join(users, c.USER_ID).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield feats
    finally:
        feats.unpersist()
        for part in ("seqs", "popularity"):
            parts[part].unpersist()


def evaluate_protocol(spark: SparkSession, cfg: Mapping, ds: dt.date, protocol: str, run_id: str) -> list[tuple]:
    """All models of one protocol; the ``metrics`` rows."""
    from jobs.rank_topn import blend_rank, excluded_pairs

    ev = cfg["eval"]
    ks = sorted(int(k) for k in ev["ks"])
    kmax = ks[-1]
    events = delta_io.read_table(spark, cfg, "events_clean")
    train, test, fds = split(events, protocol, ds, cfg)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if test.count() == 0:
            log.warning("evaluate %s: no held-out events for %s; skipped", protocol, ds)
            return []
        users = test.select(c.USER_ID).distinct()
        catalogue = delta_io.read_table(spark, cfg, "items_clean").count()
        vectors = delta_io.read_table(spark, cfg, "item_embeddings").select(c.ITEM_ID, "embedding")

        def score(models: Mapping[str, DataFrame]) -> list[tuple]:
            return _score_models(ds, protocol, run_id, models, test, train, ks, catalogue, vectors)

        ecfg = _eval_cfg(cfg, protocol, {"rank.top_n": kmax})
        with ranker_features(spark, cfg, ecfg, train, users, fds, run_id) as feats:
            models: dict[str, DataFrame] = {"blend": blend_rank(feats, ecfg)}
            for name in ev["ablations"]:
                if name in ABLATION_WEIGHT:
                    models[f"blend_{name}"] = blend_rank(
                        feats, ecfg, {**ecfg["rank"]["weights"], ABLATION_WEIGHT[name]: 0.0})
            excluded = excluded_pairs(lambda name: delta_io.read_table(spark, ecfg, name), ecfg, fds)
            if "popularity" in ev["baselines"]:
                models["popularity"] = popularity_baseline(train, users, excluded, ecfg, fds, kmax)
            if "cooccurrence" in ev["baselines"]:
                models["cooccurrence"] = cooccurrence_baseline(train, users, excluded, ecfg, kmax)
            if "als" in ev["baselines"]:
                models["als"] = als_baseline(train, users, excluded, ecfg, kmax)
            rows = score(models)
        if "no_decay" in ev["ablations"]:
            ncfg = _eval_cfg(cfg, f"{protocol}-no_decay", {"rank.top_n": kmax, **_no_decay_values(cfg)})
            with ranker_features(spark, cfg, ncfg, train, users, fds, run_id, DECAY_STAGES, copy_from=ecfg) as feats:
                rows += score({"blend_no_decay": blend_rank(feats, ncfg)})
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
    protocols = list(cfg["eval"]["protocols"])
    for p in protocols:
        check_protocol(p)
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
    rec.finish(STAGE, {"protocols": {p: {k: v for k, v in s.items() if k != "table"}
                                     for p, s in summary["protocols"].items()}, "rows": total}, rows_out=total)
    return summary


def metrics_table(spark: SparkSession, cfg: Mapping, ds: dt.date, ks: list[int] | None = None) -> str:
    """The metrics of ds as a text table per protocol (models as rows)."""
    rows = delta_io.read_table(spark, cfg, "metrics").where(F.col(c.DS) == F.lit(ds)).collect()  # bounded
    if not rows:
        return f"no metrics for {ds}; run 'recjobs eval --date {ds}'"
    ks = ks or sorted({r["k"] for r in rows})
    out = []
    for protocol in [p for p in PROTOCOLS if any(r["protocol"] == p for r in rows)]:
        sub = {(r["model"], r["metric"], r["k"]): r["value"] for r in rows if r["protocol"] == protocol}
        users = next(r["users"] for r in rows if r["protocol"] == protocol)
        cols = [f"{m}@{k}" for k in ks for m in ALL_METRICS]
        models = [m for m in MODELS if any(key[0] == m for key in sub)]
        out.append(f"{protocol} ({users} users)")
        out.append(f"  {'model':20s}" + "".join(f"{col:>13s}" for col in cols))
        for m in models:
            out.append(f"  {m:20s}" + "".join(
                f"{sub.get((m, metric, k), float('nan')):13.4f}" for k in ks for metric in ALL_METRICS))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
