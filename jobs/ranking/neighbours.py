"""Item neighbours from behaviour: EASE or item-KNN cosine on the binary user x item matrix, and
the per-user sums the ranker blends (the ``neighbours`` component and its candidate source).

The numerics are ``udfs/ease.py``'s; this module feeds them from DataFrames: the Gram matrix is
summed partition by partition (``treeReduce``: the driver holds one item x item matrix, never the
events), for catalogues of at most ``max_items`` items with events. Larger catalogues get cosine
neighbours from a self-join of each user's newest ``max_user_items`` items (no dense matrix).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from schemas import columns as c
from udfs.ease import ease_weights, gram_partition, top_neighbours

NEIGHBOUR_ID = "neighbour_id"
EASE, COSINE = "ease", "cosine"


def user_items(events: DataFrame, max_user_items: int) -> DataFrame:
    """``(user_id, item_id)``: each user's ``max_user_items`` most recently touched distinct items."""
    newest = Window.partitionBy(c.USER_ID).orderBy(F.col("_last").desc(), F.col(c.ITEM_ID))
    return (events.groupBy(c.USER_ID, c.ITEM_ID).agg(F.max(c.EVENT_TS).alias("_last"))
            .withColumn("_r", F.row_number().over(newest)).where(F.col("_r") <= max_user_items)
            .select(c.USER_ID, c.ITEM_ID))


def item_vocab(pairs: DataFrame) -> DataFrame:
    """``(item_id, _i)``: a dense index 0 .. n-1 of the items of ``pairs``, by item id."""
    return pairs.select(c.ITEM_ID).distinct().withColumn(
        "_i", (F.row_number().over(Window.orderBy(c.ITEM_ID)) - 1).cast("int"))


def user_item_lists(pairs: DataFrame, vocab: DataFrame) -> DataFrame:
    """``(user_id, _items)``: each user's item indices."""
    return pairs.join(vocab, c.ITEM_ID).groupBy(c.USER_ID).agg(F.collect_list("_i").alias("_items"))


def gram_matrix(lists: DataFrame, n: int) -> np.ndarray:
    """``X^T X`` of the users' binary item rows, summed partition by partition."""
    return (lists.select("_items").rdd
            .mapPartitions(lambda rows, _n=n: gram_partition((r["_items"] for r in rows), _n))
            .treeReduce(lambda a, b: a + b))


def ease_matrix(pairs: DataFrame, reg: float, max_items: int) -> Tuple[np.ndarray, DataFrame] | None:
    """``(B, vocab)``: the EASE weights of ``pairs``' items and their index (``vocab`` cached, for the
    caller to release), or None when there are no items or more than ``max_items``."""
    vocab = item_vocab(pairs).cache()
    n = vocab.count()
    if n == 0 or n > max_items:
        vocab.unpersist()
        return None
    return ease_weights(gram_matrix(user_item_lists(pairs, vocab), n), reg), vocab


def _neighbour_frame(spark, weights: np.ndarray, vocab: DataFrame, per_item: int) -> DataFrame:
    src, dst, w = top_neighbours(weights, per_item, signed=True)
    import pandas as pd

    idx = spark.createDataFrame(pd.DataFrame({"_s": src.astype(np.int32), "_d": dst.astype(np.int32),
                                              "weight": w.astype(np.float64)}),
                                "_s int, _d int, weight double")
    return (idx.join(vocab.select(F.col("_i").alias("_s"), F.col(c.ITEM_ID)), "_s")
            .join(vocab.select(F.col("_i").alias("_d"), F.col(c.ITEM_ID).alias(NEIGHBOUR_ID)), "_d")
            .select(c.ITEM_ID, NEIGHBOUR_ID, "weight"))


def ease_neighbours(pairs: DataFrame, reg: float, per_item: int, max_items: int) -> DataFrame | None:
    """``(item_id, neighbour_id, weight)``: each item's ``per_item`` largest EASE weights
    ``B[item, neighbour]`` in magnitude, negative ones included (None above ``max_items`` items).
    Materialised: the vocabulary it was built from is released before returning."""
    fitted = ease_matrix(pairs, reg, max_items)
    if fitted is None:
        return None
    weights, vocab = fitted
    try:
        return _neighbour_frame(pairs.sparkSession, weights, vocab, per_item).localCheckpoint()
    finally:
        vocab.unpersist()


def cosine_neighbours(pairs: DataFrame, per_item: int) -> DataFrame:
    """``(item_id, neighbour_id, weight)``: item-KNN, each item's ``per_item`` best cosines of the
    binary item columns of the ``(user_id, item_id)`` pairs (bound them per user: the self-join
    makes a user's item count squared rows)."""
    capped = pairs.select(c.USER_ID, c.ITEM_ID)
    counts = capped.groupBy(c.ITEM_ID).agg(F.count("*").alias("_n"))
    a = capped.withColumnRenamed(c.ITEM_ID, "_a")
    b = capped.withColumnRenamed(c.ITEM_ID, "_b")
    co = (a.join(b, c.USER_ID).where(F.col("_a") != F.col("_b")).groupBy("_a", "_b").agg(F.count("*").alias("_co"))
          .join(counts.select(F.col(c.ITEM_ID).alias("_a"), F.col("_n").alias("_na")), "_a")
          .join(counts.select(F.col(c.ITEM_ID).alias("_b"), F.col("_n").alias("_nb")), "_b")
          .withColumn("weight", F.col("_co") / F.sqrt(F.col("_na") * F.col("_nb"))))
    best = Window.partitionBy("_a").orderBy(F.col("weight").desc(), F.col("_b"))
    return (co.withColumn("_r", F.row_number().over(best)).where(F.col("_r") <= per_item)
            .select(F.col("_a").alias(c.ITEM_ID), F.col("_b").alias(NEIGHBOUR_ID), F.col("weight").cast("double")))


def fit_neighbours(events: DataFrame, reg: float, per_item: int, max_items: int,
                   max_user_items: int) -> Tuple[DataFrame, str]:
    """``(neighbours, method)``: EASE neighbours of the events' (user, item) pairs where the catalogue
    allows (at most ``max_items`` items), else cosine; both over each user's newest
    ``max_user_items`` distinct items."""
    pairs = user_items(events, max_user_items).cache()
    try:
        got = ease_neighbours(pairs, reg, per_item, max_items)
        if got is not None:
            return got, EASE
        return cosine_neighbours(pairs, per_item).localCheckpoint(), COSINE
    finally:
        pairs.unpersist()


def neighbour_sums(items_of_users: DataFrame, neighbours: DataFrame) -> DataFrame:
    """``(user_id, item_id, neighbours, nb_from)``: for every item that is a neighbour of one of
    the user's items, the sum of those weights (the EASE score restricted to kept neighbours) and
    the user's item that gives the most of it (ties by item id; null when no weight is positive)."""
    joined = (items_of_users.select(c.USER_ID, F.col(c.ITEM_ID).alias("_src"))
              .join(neighbours.select(F.col(c.ITEM_ID).alias("_src"), F.col(NEIGHBOUR_ID).alias(c.ITEM_ID),
                                      "weight"), "_src"))
    strongest = F.min(F.struct((-F.col("weight")).alias("_w"), F.col("_src")))
    return (joined.groupBy(c.USER_ID, c.ITEM_ID)
            .agg(F.sum("weight").alias("neighbours"), strongest.alias("_best"))
            # a reason only from a positive weight (EASE keeps negative ones too)
            .withColumn("nb_from", F.when(F.col("_best._w") < 0, F.col("_best._src")))
            .drop("_best"))


def best_per_user(sums: DataFrame, k: int) -> DataFrame:
    """``(user_id, item_id)``: each user's ``k`` largest neighbour sums (ties by item id)."""
    order = Window.partitionBy(c.USER_ID).orderBy(F.col("neighbours").desc(), F.col(c.ITEM_ID))
    return sums.withColumn("_r", F.row_number().over(order)).where(F.col("_r") <= k).select(c.USER_ID, c.ITEM_ID)
