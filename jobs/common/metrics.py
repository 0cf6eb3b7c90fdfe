"""Offline ranking metrics in Spark: Recall, NDCG, HitRate, MRR, MAP at K, coverage,
intra-list diversity and novelty.

All accuracy metrics of all K come out of one aggregation over per-user arrays (predicted items
in rank order, the set of relevant items), with binary relevance and the definitions of MLlib's
``RankingEvaluator`` (the tests check them against it and against hand-computed values):

- Recall@K = |top-K ∩ relevant| / |relevant|
- HitRate@K = 1 if any of the top K is relevant
- NDCG@K = sum_{i<=K, hit} 1/log2(i+1) / sum_{i<=min(|rel|,K)} 1/log2(i+1)
- MRR@K = 1 / rank of the first relevant item in the top K (0 if none)
- MAP@K = sum_{i<=K, hit} precision@i / min(|rel|, K)

Users with relevant items but no predictions count with zeros; users without relevant items
are not evaluated.

Several rankings are scored at once (:func:`model_accuracy`, :func:`model_beyond_accuracy`: one
set of Spark jobs for every model instead of one per model), and each accuracy mean gets a
confidence interval by a Poisson bootstrap over users (:func:`bootstrap_intervals`): replicate
``b`` weighs user ``u`` by a Poisson(1) count drawn from a hash of (u, b, seed), the same for
every model (paired), so the replicate means are sums over users that Spark adds up per
partition; only (models x replicates) sums reach the driver.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas import columns as c

ACCURACY = ("recall", "ndcg", "hit_rate", "mrr", "map")
BEYOND_ACCURACY = ("coverage", "diversity", "novelty")
ALL_METRICS = ACCURACY + BEYOND_ACCURACY
# Compared with the product over the same users (``<metric>_gap``: the product's value minus the model's).
GAP_METRICS = ("recall", "ndcg")


def ranked_lists(recs: DataFrame, rank_col: str = "rank", keys: Sequence[str] = (c.USER_ID,)) -> DataFrame:
    """(``keys``, pred: items in rank order) from one row per (keys, item, rank); ``keys`` is the
    user, or the user and a model when several rankings are scored at once."""
    return (recs.groupBy(*keys)
            .agg(F.sort_array(F.collect_list(F.struct(F.col(rank_col).alias("r"), F.col(c.ITEM_ID).alias("i"))))
                 .alias("_l"))
            .select(*keys, F.transform("_l", lambda x: x["i"]).alias("pred")))


def relevant_sets(truth: DataFrame) -> DataFrame:
    """(user_id, rel: the user's relevant items) from (user_id, item_id) rows."""
    return truth.select(c.USER_ID, c.ITEM_ID).distinct().groupBy(c.USER_ID).agg(F.collect_list(c.ITEM_ID).alias("rel"))


def _sum(arr: Column) -> Column:
    return F.aggregate(arr, F.lit(0.0), lambda acc, x: acc + x)


def user_metrics(pred: Column, rel: Column, k: int) -> dict[str, Column]:
    """Per-user metric columns at K for a ``pred`` array and a ``rel`` array."""
    top = F.slice(pred, 1, k)
    hits = F.transform(top, lambda x: F.array_contains(rel, x).cast("double"))
    n_hit = _sum(hits)
    n_rel = F.size(rel).cast("double")
    dcg = _sum(F.transform(hits, lambda h, i: h / F.log2(i + F.lit(2.0))))
    idcg = _sum(F.transform(F.sequence(F.lit(1), F.least(F.size(rel), F.lit(k))), lambda i: 1.0 / F.log2(i + F.lit(1.0))))
    first = F.array_position(hits, 1.0)
    precision_at = F.transform(hits, lambda h, i: h * _sum(F.slice(hits, 1, i + 1)) / (i + F.lit(1.0)))
    return {
        "recall": n_hit / n_rel,
        "hit_rate": (n_hit > 0).cast("double"),
        "ndcg": dcg / idcg,
        "mrr": F.when(first > 0, 1.0 / first).otherwise(0.0),
        "map": _sum(precision_at) / F.least(n_rel, F.lit(float(k))),
    }


MODEL = "model"


def metric_column(name: str, k: int) -> str:
    """The column of metric ``name`` at cut-off ``k`` in :func:`user_metric_frame`."""
    return f"{name}_at_{k}"


def user_metric_frame(recs: DataFrame, truth: DataFrame, ks: Iterable[int], models: Sequence[str],
                      by: str = MODEL) -> DataFrame:
    """(``by``, user_id, one column per accuracy metric and K) for every user in ``truth``
    (user_id, item_id) and every name in ``models``; ``recs``: (``by``, user_id, item_id, rank).
    A model without a ranking for a user counts zeros for them."""
    names = truth.sparkSession.createDataFrame([(m,) for m in models], f"{by} string")
    joined = (relevant_sets(truth).crossJoin(F.broadcast(names))
              .join(ranked_lists(recs, keys=(by, c.USER_ID)), [by, c.USER_ID], "left")
              .withColumn("pred", F.coalesce("pred", F.array().cast("array<string>"))))
    cols = [col.alias(metric_column(name, int(k))) for k in ks
            for name, col in user_metrics(F.col("pred"), F.col("rel"), int(k)).items()]
    return joined.select(by, c.USER_ID, *cols)


def model_accuracy(recs: DataFrame, truth: DataFrame, ks: Iterable[int], models: Sequence[str], by: str = MODEL,
                   replicates: int = 0, seed: int = 0, level: float = 0.95,
                   reference: str | None = None) -> dict[str, dict]:
    """Per model: ``{(metric, k): (mean, low, high)}`` over the users in ``truth``, plus
    ``("users", 0)``; (low, high) is the ``level`` bootstrap interval over users (``replicates``
    resamples; 0: None, None). Two Spark jobs (three with the bootstrap) for all models.

    With ``reference`` (one of ``models``), every other model also gets ``(f"{metric}_gap", k)``
    for each of :data:`GAP_METRICS`: the reference's mean minus the model's over the same users,
    with its paired interval (each resample weighs a user alike for every model, so the interval
    is of the difference itself, much narrower than the two models' own intervals side by side).
    """
    ks = [int(k) for k in ks]
    per_user = user_metric_frame(recs, truth, ks, models, by).persist()
    try:
        cols = [metric_column(name, k) for k in ks for name in ACCURACY]
        means = {r[by]: r for r in per_user.groupBy(by).agg(
            F.count("*").alias("_users"), *[F.avg(x).alias(x) for x in cols]).collect()}   # a row a model
        intervals = (bootstrap_intervals(per_user, cols, by, replicates, seed, level, reference)
                     if replicates else {})
    finally:
        per_user.unpersist()

    def mean(m: str, col: str) -> float:
        row = means.get(m)
        return float((row[col] if row else 0.0) or 0.0)

    out = {}
    for m in models:
        row = means.get(m)
        got = {("users", 0): (float(row["_users"]) if row else 0.0, None, None)}
        for k in ks:
            for name in ACCURACY:
                lo, hi = intervals.get((m, metric_column(name, k)), (None, None))
                got[(name, k)] = (mean(m, metric_column(name, k)), lo, hi)
            if reference is not None and m != reference:
                for name in GAP_METRICS:
                    col = metric_column(name, k)
                    lo, hi = intervals.get((m, f"gap:{col}"), (None, None))
                    got[(f"{name}_gap", k)] = (mean(reference, col) - mean(m, col), lo, hi)
        out[m] = got
    return out


def accuracy(recs: DataFrame, truth: DataFrame, ks: Iterable[int]) -> dict[tuple[str, int], float]:
    """Mean of each accuracy metric at each K over the users in ``truth`` (user_id, item_id).

    ``recs``: (user_id, item_id, rank). Returns {(metric, k): value} plus ("users", 0).
    """
    got = model_accuracy(recs.withColumn(MODEL, F.lit("_")), truth, ks, ["_"])["_"]
    return {key: v[0] for key, v in got.items()}


# Poisson(1) cumulative probabilities: a uniform u draws the count searchsorted(CDF, u).
_POISSON1_CDF = np.cumsum([np.exp(-1.0) / np.prod(np.arange(1, n + 1)) for n in range(20)])


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def poisson_weights(user_ids: pd.Series, replicates: int, seed: int) -> np.ndarray:
    """(users x replicates) Poisson(1) counts, a function of (user id, replicate, seed) alone, so
    the same user gets the same weights in every partition, model and run."""
    h = pd.util.hash_pandas_object(user_ids.astype(str), index=False).to_numpy(np.uint64)
    b = np.arange(1, replicates + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        x = _mix64(_mix64(h[:, None] ^ b[None, :]) ^ np.uint64(seed & 0xFFFFFFFF))
    u = (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return np.searchsorted(_POISSON1_CDF, u, side="right").astype(np.float64)


def gap_text(value: float, low: float | None, high: float | None) -> str:
    """A gap with its interval, signed: ``+0.0123 (-0.0040 to +0.0290)``; no interval, no brackets."""
    text = f"{value:+.4f}"
    return f"{text} ({low:+.4f} to {high:+.4f})" if low is not None and high is not None else text


def bootstrap_intervals(per_user: DataFrame, cols: Sequence[str], by: str = MODEL, replicates: int = 200,
                        seed: int = 0, level: float = 0.95,
                        reference: str | None = None) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(model, col): (low, high)}``: the percentile interval of each column's mean over users
    across ``replicates`` Poisson-bootstrap resamples of the users of ``per_user`` (``by``,
    user_id, ``cols``). Each partition adds up its users' weighted values per replicate; the
    driver gets one row per (model, replicate). With ``reference``, also ``(model,
    "gap:<col>")`` for every other model: the interval of the reference's mean minus the model's,
    resample by resample (the weights are the user's alone, so both means weigh the same users)."""
    cols = list(cols)
    schema = ", ".join([f"{by} string", "_b int", "_n double", *[f"{x} double" for x in cols]])

    def partial(batches):
        for pdf in batches:
            if not len(pdf):
                continue
            weights = poisson_weights(pdf[c.USER_ID], replicates, seed)
            values = np.nan_to_num(pdf[cols].to_numpy(np.float64))
            for model, idx in pdf.groupby(by).indices.items():
                w = weights[idx]
                sums = w.T @ values[idx]                                   # replicates x cols
                yield pd.DataFrame({by: model, "_b": np.arange(replicates, dtype=np.int32), "_n": w.sum(axis=0),
                                    **{x: sums[:, j] for j, x in enumerate(cols)}})

    sums = (per_user.select(by, c.USER_ID, *cols).mapInPandas(partial, schema)
            .groupBy(by, "_b").agg(F.sum("_n").alias("_n"), *[F.sum(x).alias(x) for x in cols]))
    rows = sums.collect()                                        # models x replicates rows
    frame = pd.DataFrame([r.asDict() for r in rows])
    out = {}
    if frame.empty:
        return out
    tail = (1.0 - level) / 2.0 * 100.0
    resampled = {}
    for model, g in frame.groupby(by):
        g = g.sort_values("_b")
        n = g["_n"].to_numpy()
        ok = n > 0
        resampled[model] = (g["_b"].to_numpy()[ok], {x: g[x].to_numpy()[ok] / n[ok] for x in cols})
        for x in cols:
            means = resampled[model][1][x]
            if len(means):
                lo, hi = np.percentile(means, [tail, 100.0 - tail])
                out[(model, x)] = (float(lo), float(hi))
    if reference in resampled:
        ref_b, ref = resampled[reference]
        for model, (b, own) in resampled.items():
            if model == reference or not np.array_equal(b, ref_b) or not len(b):
                continue
            for x in cols:
                lo, hi = np.percentile(ref[x] - own[x], [tail, 100.0 - tail])
                out[(model, f"gap:{x}")] = (float(lo), float(hi))
    return out


def _mean_pair_distance(entries: str, k: int) -> Column:
    """The mean cosine distance 1 - u.v over the pairs of vectors ``_v`` of the ``entries``
    (an array of (rank, _v) structs) with rank <= k; null with fewer than two. From the sum S of
    the n vectors and their squared norms q: the pairs' dot products add up to (S.S - q) / 2, so
    the mean is 1 - (S.S - q) / (n (n - 1)), a pass over the list rather than over its pairs."""
    vs = f"transform(filter({entries}, e -> e.rank <= {int(k)}), e -> transform(e._v, x -> cast(x AS DOUBLE)))"
    total = "aggregate(slice(lst, 2, size(lst)), lst[0], (acc, v) -> zip_with(acc, v, (x, y) -> x + y))"
    squares = "aggregate(lst, 0D, (acc, v) -> acc + aggregate(v, 0D, (a, x) -> a + x * x))"
    return F.expr(f"""aggregate(array({vs}), CAST(NULL AS DOUBLE), (unused, lst) -> CASE WHEN size(lst) >= 2 THEN
        1D - (aggregate({total}, 0D, (a, x) -> a + x * x) - {squares}) / (size(lst) * (size(lst) - 1D)) END)""")


def model_beyond_accuracy(recs: DataFrame, item_vectors: DataFrame, train: DataFrame, catalogue_size: int,
                          ks: Iterable[int], models: Sequence[str], by: str = MODEL) -> dict[str, dict]:
    """:func:`beyond_accuracy` of every model in ``recs`` (``by``, user_id, item_id, rank) at
    once: ``{model: {(metric, k): value}}``, three Spark jobs for all of them."""
    ks = sorted(int(k) for k in ks)
    cov = {r[by]: r for r in recs.groupBy(by).agg(
        *[F.countDistinct(F.when(F.col("rank") <= k, F.col(c.ITEM_ID))).alias(f"c{k}") for k in ks]).collect()}
    top = recs.where(F.col("rank") <= ks[-1]).join(item_vectors.select(c.ITEM_ID, F.col("embedding").alias("_v")),
                                                   c.ITEM_ID)
    lists = top.groupBy(by, c.USER_ID).agg(F.collect_list(F.struct("rank", "_v")).alias("_l"))
    per_user = lists.select(by, c.USER_ID, *[_mean_pair_distance("_l", k).alias(f"d{k}") for k in ks])
    div = {r[by]: r for r in per_user.groupBy(by).agg(*[F.avg(f"d{k}").alias(f"d{k}") for k in ks]).collect()}
    n_users = train.select(c.USER_ID).distinct().count()
    pop = train.groupBy(c.ITEM_ID).agg(F.countDistinct(c.USER_ID).alias("_n"))
    info = -F.log2((F.coalesce("_n", F.lit(0)) + 1.0) / F.lit(n_users + 1.0))
    nov = {r[by]: r for r in recs.join(pop, c.ITEM_ID, "left").groupBy(by)
           .agg(*[F.avg(F.when(F.col("rank") <= k, info)).alias(f"n{k}") for k in ks]).collect()}
    out = {}
    for m in models:
        got = {}
        for k in ks:
            covered = cov[m][f"c{k}"] if m in cov else 0
            got[("coverage", k)] = covered / catalogue_size if catalogue_size else 0.0
            got[("diversity", k)] = float((div[m][f"d{k}"] if m in div else 0.0) or 0.0)
            got[("novelty", k)] = float((nov[m][f"n{k}"] if m in nov else 0.0) or 0.0)
        out[m] = got
    return out


def beyond_accuracy(recs: DataFrame, item_vectors: DataFrame, train: DataFrame, catalogue_size: int,
                    ks: Iterable[int]) -> dict[tuple[str, int], float]:
    """Coverage, intra-list diversity and novelty at every K, three Spark jobs in all.

    - coverage@K: share of the catalogue in somebody's top K;
    - diversity@K: mean over users of the mean pairwise cosine distance (1 - cos) of their top-K
      item vectors (unit length); users with one item are skipped;
    - novelty@K: mean self-information -log2 p(item) of the top-K items, p = share of training
      users who had the item (add-one smoothed, so unseen items are the most novel).
    """
    return model_beyond_accuracy(recs.withColumn(MODEL, F.lit("_")), item_vectors, train, catalogue_size, ks,
                                 ["_"])["_"]
