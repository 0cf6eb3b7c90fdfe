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
"""
from __future__ import annotations

from typing import Iterable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas import columns as c

ACCURACY = ("recall", "ndcg", "hit_rate", "mrr", "map")
BEYOND_ACCURACY = ("coverage", "diversity", "novelty")
ALL_METRICS = ACCURACY + BEYOND_ACCURACY


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


def accuracy(recs: DataFrame, truth: DataFrame, ks: Iterable[int]) -> dict[tuple[str, int], float]:
    """Mean of each accuracy metric at each K over the users in ``truth`` (user_id, item_id).

    ``recs``: (user_id, item_id, rank). Returns {(metric, k): value} plus ("users", 0).
    """
    joined = (relevant_sets(truth).join(ranked_lists(recs), c.USER_ID, "left")
              .withColumn("pred", F.coalesce("pred", F.array().cast("array<string>"))))
    exprs = [F.count("*").alias("users")]
    for k in ks:
        for name, col in user_metrics(F.col("pred"), F.col("rel"), int(k)).items():
            exprs.append(F.avg(col).alias(f"{name}@{k}"))
    row = joined.agg(*exprs).first().asDict()
    out = {("users", 0): float(row.pop("users") or 0)}
    for key, value in row.items():
        name, k = key.split("@")
        out[(name, int(k))] = float(value or 0.0)
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
    ks = sorted(int(k) for k in ks)
    cov = recs.agg(*[F.countDistinct(F.when(F.col("rank") <= k, F.col(c.ITEM_ID))).alias(f"c{k}") for k in ks]).first()
    out = {("coverage", k): (cov[f"c{k}"] / catalogue_size if catalogue_size else 0.0) for k in ks}
    top = recs.where(F.col("rank") <= ks[-1]).join(item_vectors.select(c.ITEM_ID, F.col("embedding").alias("_v")),
                                                   c.ITEM_ID)
    a = top.select(c.USER_ID, F.col("rank").alias("_ra"), F.col("_v").alias("_va"))
    b = top.select(c.USER_ID, F.col("rank").alias("_rb"), F.col("_v").alias("_vb"))
    dist = 1.0 - _sum(F.zip_with("_va", "_vb", lambda x, y: x * y))
    per_user = (a.join(b, c.USER_ID).where(F.col("_ra") < F.col("_rb")).groupBy(c.USER_ID)
                .agg(*[F.avg(F.when(F.col("_rb") <= k, dist)).alias(f"d{k}") for k in ks]))
    div = per_user.agg(*[F.avg(f"d{k}").alias(f"d{k}") for k in ks]).first()
    out.update({("diversity", k): float(div[f"d{k}"] or 0.0) for k in ks})
    n_users = train.select(c.USER_ID).distinct().count()
    pop = train.groupBy(c.ITEM_ID).agg(F.countDistinct(c.USER_ID).alias("_n"))
    info = -F.log2((F.coalesce("_n", F.lit(0)) + 1.0) / F.lit(n_users + 1.0))
    nov = (recs.join(pop, c.ITEM_ID, "left")
           .agg(*[F.avg(F.when(F.col("rank") <= k, info)).alias(f"n{k}") for k in ks]).first())
    out.update({("novelty", k): float(nov[f"n{k}"] or 0.0) for k in ks})
    return out
