"""Baselines every evaluation table carries: decayed popularity, item co-occurrence, MLlib ALS,
EASE; and the sequence model ranking on its own.

Each takes the training events, the users to rank and the excluded pairs (the product's own
exclusions), and returns ``(user_id, item_id, rank)`` rows.
"""
from __future__ import annotations

import datetime as dt
from typing import Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.events import day_end, lookup
from jobs.ranking import decayed_popularity, retrieve, top_popular
from jobs.ranking.neighbours import ease_matrix, user_item_lists
from schemas import columns as c
from udfs.ease import binary_rows


def top_k(scored: DataFrame, k: int, score: str) -> DataFrame:
    """``(user_id, item_id, rank)``: each user's ``k`` best by ``score`` desc, item id asc."""
    order = Window.partitionBy(c.USER_ID).orderBy(F.col(score).desc(), F.col(c.ITEM_ID))
    return (scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)
            .select(c.USER_ID, c.ITEM_ID, "rank"))


def weighted_counts(events: DataFrame, type_weights: Mapping[str, float], *keys: str) -> DataFrame:
    """``keys`` + ``_w``: the sum of the type weights of the events of each group."""
    return events.groupBy(*keys).agg(F.sum(lookup(type_weights, F.col(c.EVENT_TYPE))).alias("_w"))


def popularity_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, fds: dt.date, k: int,
                        half_life_days: float, lookback_days: int, type_weights: Mapping[str, float]) -> DataFrame:
    """Decayed popularity (the rank stage's own), the same list for everyone minus their exclusions."""
    recent = train.where(F.col(c.EVENT_DATE) > F.lit(fds - dt.timedelta(days=lookback_days)))
    pop = decayed_popularity(recent, day_end(fds), half_life_days, type_weights)
    head = top_popular(pop, k * 3)   # room for exclusions
    cands = users.crossJoin(head).join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti")
    return top_k(cands, k, "popularity")


def cooccurrence_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, k: int,
                          type_weights: Mapping[str, float], recent_items: int, max_basket: int) -> DataFrame:
    """Items that share a daily basket (user, day) with the user's ``recent_items`` newest items, by
    count; a basket keeps its ``max_basket`` most weighted items (bounds the pairs per basket)."""
    basket = weighted_counts(train, type_weights, c.USER_ID, c.EVENT_DATE, c.ITEM_ID)
    in_basket = Window.partitionBy(c.USER_ID, c.EVENT_DATE).orderBy(F.col("_w").desc(), F.col(c.ITEM_ID))
    basket = (basket.withColumn("_b", F.row_number().over(in_basket))
              .where(F.col("_b") <= max_basket).select(c.USER_ID, c.EVENT_DATE, c.ITEM_ID))
    a, b = basket.withColumnRenamed(c.ITEM_ID, "_a"), basket.withColumnRenamed(c.ITEM_ID, "_b")
    pairs = (a.join(b, [c.USER_ID, c.EVENT_DATE]).where(F.col("_a") != F.col("_b"))
             .groupBy("_a", "_b").agg(F.count("*").alias("_n")))
    newest = Window.partitionBy(c.USER_ID).orderBy(F.col("_last").desc(), F.col(c.ITEM_ID))
    recent = (train.join(users, c.USER_ID).groupBy(c.USER_ID, c.ITEM_ID).agg(F.max(c.EVENT_TS).alias("_last"))
              .withColumn("_r", F.row_number().over(newest))
              .where(F.col("_r") <= recent_items).select(c.USER_ID, F.col(c.ITEM_ID).alias("_a")))
    scored = (recent.join(pairs, "_a").groupBy(c.USER_ID, F.col("_b").alias(c.ITEM_ID)).agg(F.sum("_n").alias("_s"))
              .join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti"))
    return top_k(scored, k, "_s")


def als_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, k: int,
                 type_weights: Mapping[str, float], als: Mapping) -> DataFrame:
    """MLlib ALS with implicit feedback on event-type-weighted (user, item) counts (``eval.als``)."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS

    ratings = weighted_counts(train, type_weights, c.USER_ID, c.ITEM_ID)
    u_idx = StringIndexer(inputCol=c.USER_ID, outputCol="_u", handleInvalid="skip").fit(ratings)
    i_idx = StringIndexer(inputCol=c.ITEM_ID, outputCol="_i").fit(ratings)
    data = i_idx.transform(u_idx.transform(ratings)).select(F.col("_u").cast("int"), F.col("_i").cast("int"), "_w")
    model = ALS(rank=int(als["rank"]), regParam=float(als["reg_param"]), alpha=float(als["alpha"]),
                maxIter=int(als["max_iter"]), seed=int(als["seed"]), implicitPrefs=True, userCol="_u",
                itemCol="_i", ratingCol="_w", coldStartStrategy="drop", nonnegative=True).fit(data)
    subset = u_idx.transform(users).select(F.col("_u").cast("int"))
    recs = model.recommendForUserSubset(subset, k * 3).select("_u", F.posexplode("recommendations").alias("_p", "_r"))
    umap = u_idx.transform(ratings.select(c.USER_ID).distinct()).select(F.col("_u").cast("int"), c.USER_ID)
    imap = i_idx.transform(ratings.select(c.ITEM_ID).distinct()).select(F.col("_i").cast("int"), c.ITEM_ID)
    scored = (recs.select("_u", F.col("_r._i").alias("_i"), F.col("_r.rating").alias("_s"))
              .join(umap, "_u").join(imap, "_i").select(c.USER_ID, c.ITEM_ID, "_s")
              .join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti"))
    return top_k(scored, k, "_s")


def ease_baseline(train: DataFrame, users: DataFrame, excluded: DataFrame, k: int, reg: float,
                  max_items: int) -> DataFrame | None:
    """EASE on the binary (user, item) matrix of the training events, for catalogues of at most
    ``max_items`` items with training events (None above: the dense item-item matrix would not fit).

    The Gram matrix is summed partition by partition (``treeReduce``: the driver holds one item x
    item matrix, never the events); the scores are one product per batch of users inside
    ``mapInArrow`` against the broadcast weights."""
    import numpy as np
    import pyarrow as pa

    spark = train.sparkSession
    pairs = train.select(c.USER_ID, c.ITEM_ID).distinct()
    fitted = ease_matrix(pairs, reg, max_items)
    if fitted is None:
        return None
    weights, vocab = fitted
    try:
        n = weights.shape[0]
        lists = user_item_lists(pairs, vocab)
        bc = spark.sparkContext.broadcast(weights)
        best = min(n, k * 3)                                  # room for exclusions

        def body(batches, _bc=bc, _best=best, _n=n):
            weights = _bc.value
            for batch in batches:
                scores = binary_rows(batch.column("_items").to_pylist(), _n) @ weights
                top = np.argpartition(-scores, _best - 1, axis=1)[:, :_best]
                user = np.repeat(np.asarray(batch.column(c.USER_ID).to_pylist(), dtype=object), _best)
                yield pa.RecordBatch.from_pydict({c.USER_ID: user.tolist(), "_i": top.reshape(-1).astype(np.int32),
                                                  "_s": np.take_along_axis(scores, top, 1).reshape(-1).astype(np.float64)})

        scored = (lists.join(users, c.USER_ID).select(c.USER_ID, "_items")
                  .mapInArrow(body, "user_id string, _i int, _s double")
                  .join(vocab, "_i").select(c.USER_ID, c.ITEM_ID, "_s")
                  .join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti"))
        return top_k(scored, k, "_s")
    finally:
        vocab.unpersist()


def vector_baseline(user_vectors: DataFrame, item_vectors: DataFrame, users: DataFrame, excluded: DataFrame,
                    k: int, shard_rows: int, block_rows: int) -> DataFrame:
    """Each user's ``k`` best items by inner product of a model's user and item vectors (the
    sequence model alone), minus the exclusions."""
    got = retrieve(user_vectors.join(users, c.USER_ID).select(c.USER_ID, "embedding"), item_vectors,
                   k * 3, shard_rows, block_rows)
    return top_k(got.join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti"), k, "cosine")
