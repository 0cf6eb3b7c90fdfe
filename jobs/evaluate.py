"""evaluate: offline metrics of the blend, its ablations and baselines, on held-out events.

    recjobs eval --date 2026-06-30 [--conf F]
    spark-submit ... jobs/evaluate.py --date 2026-06-30 --conf conf/cluster.yaml

For each protocol in ``eval.protocols`` (leave-last-out, next-day, random per-user split) the
stage splits ``events_clean`` into training events and held-out (user, item) pairs
(``jobs/evaluation``), writes the training events (and the catalogue and item vectors, which do
not depend on events) into a hold-out lake ``<lake>/_holdout/<protocol>/`` (``jobs/evaluation/holdout.py``; the
nightly's learned blend may have built it tonight already), rebuilds every
event-derived feature there with the same stage code as the nightly (sequences, user vectors,
topics, sentiment, rules, popularity), so that nothing held out leaks into training, and ranks
with the blend (``jobs/ranking``), its ablations (one per component of the component table that
has one, and ``no_decay``), the fixed blend (``blend_fixed``) and the baselines (decayed popularity, item co-occurrence, MLlib ALS
with implicit feedback, EASE, the sequence model alone and the sequence model trained without
the language-model input, ``seqrec_no_text``) for the same users. ``recall_rare`` and
``ndcg_rare`` score the held-out items with fewer than ``eval.rare_item_events`` training events.

Under the nightly's own hold-out (``rank.train_protocol``, leave-last-out) the product is the
blend the nightly learned and ranked with, which learned from the other half of the users
(``jobs.evaluation.splits.evaluation_half``); this half is scored. Under the other protocols the
blend is learned on a hold-out nested in the split's training events. At most
``eval.max_users`` users are scored (a seeded sample), all models in one pass, every accuracy
metric with its bootstrap interval over users (``eval.bootstrap``, ``eval.ci_level``). Metrics
(``jobs/common/metrics.py``) go to the ``metrics`` table, one ``replaceWhere ds = D AND
protocol = P`` commit per protocol.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.metrics import GAP_METRICS, MODEL, model_accuracy, model_beyond_accuracy
from jobs.common.runlog import StageRecord
from jobs.common.settings import EvalSettings, LearnSettings, RankSettings
from jobs.evaluation import PRODUCT, evaluation_half, reserves_evaluation_half, split, with_training_events
from jobs.evaluation.baselines import (als_baseline, cooccurrence_baseline, ease_baseline, popularity_baseline,
                                      vector_baseline)
from jobs.evaluation.holdout import (DECAY_STAGES, build_features, events_source, history_days, holdout_cfg, holdout_name,
                                     learn_from_holdout, no_decay_values, ranker_features, split_source)
from jobs.ranking import blend_rank, blend_stats, excluded_pairs, store
from jobs.ranking.learn import model_scorer, use_half_lives
from schemas import columns as c
from schemas import tables as t
from schemas.components import ablations

log = logging.getLogger(__name__)

STAGE = "evaluate"


# ------------------------------------------------------------------------- evaluation lake
def evaluation_blend(spark: SparkSession, ecfg: Mapping, train: DataFrame, fds: dt.date, run_id: str,
                     protocol: str, relevant_types, source: str) -> dict:
    """The product's blend for one split, as the nightly would have made it from the split's
    training events alone: learned on the hold-out nested in the split's lake ``ecfg``, or the
    fixed weights when ``rank.model: fixed`` or there are too few labels."""
    fixed = RankSettings.from_config(ecfg).weights
    if LearnSettings.from_config(ecfg).model == "fixed":
        return {"source": "fixed", "weights": fixed, "half_lives": {}}
    learned = learn_from_holdout(spark, ecfg, train, fds, run_id, relevant_types, source)
    if learned.fitted is None:
        log.warning("evaluate %s: no blend learned (%s); the product is evaluated with the fixed weights",
                    protocol, learned.reason)
        return {"source": "fallback_fixed", "weights": fixed, "half_lives": {}, "why": learned.reason}
    f = learned.fitted
    return {"source": "learned", "weights": f.weights, "half_lives": f.half_lives, "chosen": f.chosen,
            "scorer": model_scorer(f.model) if f.learner == "gbt" and f.chosen == "learned" else None,
            "validation_ndcg": f.metrics["validation_ndcg"], "fixed_ndcg": f.metrics["fixed_ndcg"],
            "best_single": f.metrics["best_single"], "best_single_ndcg": f.metrics["best_single_ndcg"]}


def night_blend(spark: SparkSession, cfg: Mapping, ds: dt.date, source: str, seed: int) -> dict | None:
    """The blend the nightly learned for ds, when it was learned on this very split with the
    evaluation half of the users left out (``jobs.evaluation.splits.evaluation_half``); else None."""
    fit = store.fit_of(spark, cfg, ds)
    if fit is None:
        return None
    details = json.loads(fit["details"] or "{}")
    if details.get("split") != source or details.get("reserved") != {"evaluation_half_seed": seed}:
        log.info("evaluate: the nightly's fit of %s was not learned on this split without the evaluation half; "
                 "learning one on a nested hold-out", ds)
        return None
    scorer = store.scorer_of(cfg, fit["learner"], fit["chosen"], fit["path"])
    return {"source": "night", "weights": dict(fit["weights"]), "half_lives": dict(fit["half_lives"]),
            "chosen": fit["chosen"], "scorer": scorer, "validation_ndcg": fit["validation_ndcg"],
            "fixed_ndcg": fit["fixed_ndcg"], "best_single": fit["best_single"],
            "best_single_ndcg": fit["best_single_ndcg"]}


def evaluate_protocol(spark: SparkSession, cfg: Mapping, ds: dt.date, protocol: str, run_id: str) -> tuple[list, dict]:
    """All models of one protocol; the ``metrics`` rows and the product's blend."""
    ev = EvalSettings.from_config(cfg)
    ls = LearnSettings.from_config(cfg)
    # the nightly's own hold-out: its blend learned from the other half of the users, this half is scored
    half = (protocol == ls.train_protocol and ls.model != "fixed"
            and reserves_evaluation_half(ls.train_protocol, ev.protocols))
    ks = sorted(int(k) for k in ev.ks)
    kmax = ks[-1]
    events = delta_io.read_table(spark, cfg, "events_clean")
    t0 = time.monotonic()
    train, test, fds = split(events, protocol, ds, ev.relevant_types, ev.random_ratio, ev.seed)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    cached = [train, test]
    try:
        if test.count() == 0:
            log.warning("evaluate %s: no held-out events for %s; skipped", protocol, ds)
            return [], {}
        held_out_users = candidates = test.select(c.USER_ID).distinct().count()
        if half:
            test = test.where(evaluation_half(ev.seed)).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(test)
            candidates = test.select(c.USER_ID).distinct().count()
        if ev.max_users is not None and candidates > ev.max_users:
            sampled = sample_users(test.select(c.USER_ID).distinct(), ev.max_users, ev.seed)
            test = test.join(sampled, c.USER_ID).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(test)
        users = test.select(c.USER_ID).distinct()
        span = history_days(train, fds)
        catalogue = delta_io.read_table(spark, cfg, "items_clean").count()
        vectors = delta_io.read_table(spark, cfg, "item_embeddings").select(c.ITEM_ID, "embedding")

        rare = (with_training_events(test, train).where(F.col("train_events") < ev.rare_item_events)
                .drop("train_events"))
        rare = rare if rare.limit(1).count() else None        # no rare held-out item: no rare metrics

        def score(models: Mapping[str, DataFrame]) -> list[tuple]:
            return _score_models(ds, protocol, run_id, models, test, train, ks, catalogue, vectors, rare, ev)

        ecfg = holdout_cfg(cfg, holdout_name(protocol), {"rank.top_n": kmax}, span)
        # the split's training events, named so that the nightly's hold-out lake of the same split serves
        source = split_source(events_source(spark, cfg), protocol, ds, ev.relevant_types,
                              **({"ratio": ev.random_ratio, "seed": ev.seed} if protocol == "random_split" else {}))
        phases = {"split": time.monotonic() - t0}
        # the split's lake first: the blend is learned on a hold-out nested in it
        build_features(spark, cfg, ecfg, train, fds, run_id, source=source)
        phases["features"] = time.monotonic() - t0 - sum(phases.values())
        blend = night_blend(spark, cfg, ds, source, ev.seed) if half else None
        if blend is None:
            blend = evaluation_blend(spark, ecfg, train, fds, run_id, protocol, ev.relevant_types, source)
        phases["blend"] = time.monotonic() - t0 - sum(phases.values())
        rs = RankSettings.from_config(ecfg)
        fixed_half_lives = rs.half_lives
        half_lives = {**fixed_half_lives, **blend["half_lives"]}
        grid = {k: sorted({fixed_half_lives[k], half_lives[k]}) for k in fixed_half_lives}
        with ranker_features(spark, cfg, ecfg, train, users, fds, run_id, half_life_grid=grid, build=False) as feats:
            product = use_half_lives(feats, half_lives)
            # the product and its ablations rank the same rows: standardised with one aggregation
            stats = blend_stats(product)
            models: dict[str, DataFrame] = {
                PRODUCT: blend_rank(product, rs, blend["weights"], scorer=blend.get("scorer"), stats=stats)}
            # the nightly may have chosen the fixed blend itself: then it is the product's very ranking
            models[f"{PRODUCT}_fixed"] = models[PRODUCT] if (
                blend["weights"] == rs.weights and half_lives == fixed_half_lives and blend.get("scorer") is None) \
                else blend_rank(use_half_lives(feats, fixed_half_lives), rs, rs.weights,
                                stats=stats if half_lives == fixed_half_lives else None)
            for name, component in ablations().items():
                if name in ev.ablations:
                    weights = {**blend["weights"], component: 0.0}
                    # a component the blend gives no weight: its ablation is the product's very ranking
                    same = weights == blend["weights"] and blend.get("scorer") is None
                    models[f"{PRODUCT}_{name}"] = models[PRODUCT] if same else blend_rank(product, rs, weights,
                                                                                         stats=stats)
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
            if "ease" in ev.baselines:
                ease = ease_baseline(train, users, excluded, kmax, ev.ease_reg, ev.ease_max_items)
                if ease is None:
                    log.warning("evaluate %s: EASE skipped: more than eval.ease_max_items = %d items", protocol,
                                ev.ease_max_items)
                else:
                    models["ease"] = ease
            if "seqrec" in ev.baselines:
                models["seqrec"] = _sequence_alone(read, users, excluded, fds, kmax, rs)
            rows = score(models)
        phases["models"] = time.monotonic() - t0 - sum(phases.values())
        if "seqrec_no_text" in ev.baselines:
            # the same training with ID embeddings only, in a lake of its own (sequences rebuilt there)
            tcfg = holdout_cfg(cfg, holdout_name(protocol, "-no_text"),
                               {"rank.top_n": kmax, "seqrec.use_text": False, "seqrec.id_embeddings": True}, span)
            build_features(spark, cfg, tcfg, train, fds, run_id, ("build_sequences", "train_seqrec"))
            rows += score({"seqrec_no_text": _sequence_alone(delta_io.reader(spark, tcfg), users, excluded, fds,
                                                             kmax, rs)})
        if "no_decay" in ev.ablations:
            ncfg = holdout_cfg(cfg, holdout_name(protocol, "-no_decay"), {"rank.top_n": kmax, **no_decay_values(cfg)}, span)
            with ranker_features(spark, cfg, ncfg, train, users, fds, run_id, DECAY_STAGES, copy_from=ecfg) as feats:
                rows += score({f"{PRODUCT}_no_decay": blend_rank(feats, RankSettings.from_config(ncfg),
                                                                 blend["weights"])})
        phases["rebuilt_variants"] = time.monotonic() - t0 - sum(phases.values())
        info = {k: v for k, v in blend.items() if k != "scorer"}
        log.info("evaluate %s: seconds by phase %s", protocol, {k: round(v, 1) for k, v in phases.items()})
        return rows, {"blend": info, "held_out_users": held_out_users,
                      "phase_seconds": {k: round(v, 1) for k, v in phases.items()}}
    finally:
        for frame in cached:
            frame.unpersist()


def sample_users(users: DataFrame, n: int, seed: int) -> DataFrame:
    """``n`` of ``users`` (user_id), chosen by a seeded hash of the id: the same users every night
    and whatever the partitioning (a top-n by hash, no shuffle of the whole frame)."""
    return (users.select(c.USER_ID, F.xxhash64(F.col(c.USER_ID), F.lit(seed)).alias("_h"))
            .orderBy("_h", c.USER_ID).limit(n).select(c.USER_ID))


def _sequence_alone(read, users: DataFrame, excluded: DataFrame, fds: dt.date, k: int, rs: RankSettings) -> DataFrame:
    """The sequence model of a lake ranking on its own (its top-K minus the exclusions)."""
    on = F.col(c.DS) == F.lit(fds)
    return vector_baseline(read("sequence_user_vectors").where(on), read("sequence_item_vectors").where(on)
                           .select(c.ITEM_ID, "embedding"), users, excluded, k, rs.broadcast_max_items, rs.block_rows)


def _score_models(ds: dt.date, protocol: str, run_id: str, models: Mapping[str, DataFrame], test: DataFrame,
                  train: DataFrame, ks: list[int], catalogue: int, vectors: DataFrame,
                  rare: DataFrame | None, ev: EvalSettings) -> list[tuple]:
    """The metrics rows of every model, all scored in one pass (the rankings side by side under a
    ``model`` column); ``recall_rare``/``ndcg_rare`` are over the held-out items of ``rare``
    (those with few training events; None: there are none). Accuracy metrics carry their
    bootstrap interval over users; when the product is among ``models``, every other model gets
    ``ndcg_gap``/``recall_gap``, the product's value minus its own, with the paired interval. A
    frame given under several names (an ablation of a component without weight is the product's
    ranking) is computed once and scored under each name."""
    t0 = time.monotonic()
    names = list(models)
    first: dict[int, str] = {}
    same_as = {name: first.setdefault(id(frame), name) for name, frame in models.items()}
    ranked = [name for name in names if same_as[name] == name]
    recs = None
    for name in ranked:
        one = models[name].select(F.lit(name).alias(MODEL), c.USER_ID, c.ITEM_ID, "rank")
        recs = one if recs is None else recs.unionByName(one)
    recs = recs.persist(StorageLevel.MEMORY_AND_DISK)
    reference = PRODUCT if PRODUCT in ranked else None
    try:
        # the product against every model scored with it: ndcg_gap / recall_gap with paired intervals
        acc = model_accuracy(recs, test, ks, ranked, replicates=ev.bootstrap, seed=ev.seed, level=ev.ci_level,
                             reference=reference)
        on_rare = model_accuracy(recs, rare, ks, ranked, replicates=ev.bootstrap, seed=ev.seed,
                                 level=ev.ci_level) if rare is not None else {}
        beyond = model_beyond_accuracy(recs, vectors, train, catalogue, ks, ranked)
    finally:
        recs.unpersist()
    # a name for another's very ranking scores what it scores; the product's has no gap to it
    no_gap = (0.0, 0.0, 0.0) if ev.bootstrap else (0.0, None, None)
    for name, of in same_as.items():
        if of != name:
            acc[name] = {**acc[of], **({(f"{m}_gap", k): no_gap for m in GAP_METRICS for k in ks}
                                       if of == reference else {})}
            beyond[name] = beyond[of]
            if of in on_rare:
                on_rare[name] = on_rare[of]
    rows = []
    for model in names:
        values = dict(acc[model])
        users = int(values.pop(("users", 0))[0])
        if model in on_rare:
            values.update({(f"{m}_rare", k): v for (m, k), v in on_rare[model].items() if m in ("recall", "ndcg")})
        values.update({key: (v, None, None) for key, v in beyond[model].items()})
        rows += [(ds, protocol, model, metric, k, float(v), users, run_id, lo, hi)
                 for (metric, k), (v, lo, hi) in sorted(values.items())]
        log.info("evaluate %s %s: ndcg@%d %.4f [%s] recall@%d %.4f (%d users)", protocol, model, ks[0],
                 values[("ndcg", ks[0])][0], _interval(values[("ndcg", ks[0])]), ks[0],
                 values[("recall", ks[0])][0], users)
    log.info("evaluate %s: %d models scored in %.1fs", protocol, len(names), time.monotonic() - t0)
    return rows


def _interval(value: tuple) -> str:
    _, lo, hi = value
    return "no interval" if lo is None else f"{lo:.4f} to {hi:.4f}"


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Evaluate every configured protocol; write ``metrics``."""
    rec = rec or StageRecord()
    protocols = list(EvalSettings.from_config(cfg).protocols)
    summary: dict = {"protocols": {}}
    total = 0
    for protocol in protocols:
        t0 = time.monotonic()
        rows, info = evaluate_protocol(spark, cfg, ds, protocol, run_id)
        if rows:
            delta_io.replace_where(spark.createDataFrame(rows, t.METRICS), cfg, "metrics",
                                   f"ds = DATE'{ds.isoformat()}' AND protocol = '{protocol}'")
        total += len(rows)
        summary["protocols"][protocol] = {
            "seconds": round(time.monotonic() - t0, 1), "users": rows[0][6] if rows else 0,
            "held_out_users": info.get("held_out_users", 0), "blend": info.get("blend", {}),
            "phase_seconds": info.get("phase_seconds", {}),
            "table": {f"{m}.{metric}@{k}": round(v, 4) for _, _, m, metric, k, v, *_ in rows}}
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
