"""Candidate sources of the ranker and the per-user signals they come with.

(a) blocked top-K retrieval of user vectors against the item matrix (``udfs/topk.py``), (b)
association rules fired by the user's newest items, (c) decayed popularity, (d) the items of the
user's own sequence with how recently they were touched, and the user's share of interest per
category. Pure DataFrame functions taking plain values.
"""
from __future__ import annotations

import datetime as dt
from typing import Mapping

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.events import age_days, lookup
from schemas import columns as c
from udfs.topk import shard_value, topk_batches


def dot(a: Column, b: Column) -> Column:
    """Inner product of two equal-length array columns (NULL if either is NULL)."""
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0).cast("double"), lambda acc, x: acc + x)


def retrieve(user_vectors: DataFrame, item_vectors: DataFrame, k: int, shard_rows: int, block_rows: int) -> DataFrame:
    """``(user_id, item_id, cosine)``: each user's ``k`` nearest items by inner product.

    The item matrix (the catalogue, not the users) is collected as Arrow shard by shard (each
    at most ``shard_rows`` rows, so the driver never holds more), broadcast, and multiplied
    block-wise inside ``mapInArrow``; more than one shard is merged with a second top-K.
    """
    spark = user_vectors.sparkSession
    items = item_vectors.select(c.ITEM_ID, "embedding")
    head = items.limit(shard_rows + 1).toArrow()          # the whole catalogue when it fits one shard
    sharded = head.num_rows > shard_rows
    if not sharded:
        tables = [head]
    else:
        head = None
        numbered = items.withColumn("_shard", F.floor((F.row_number().over(Window.orderBy(c.ITEM_ID)) - 1)
                                                      / F.lit(shard_rows)).cast("int")).persist(StorageLevel.MEMORY_AND_DISK)
        n_shards = int(numbered.agg(F.max("_shard")).first()[0]) + 1
        tables = (numbered.where(F.col("_shard") == s).drop("_shard").toArrow() for s in range(n_shards))
    parts = []
    for table in tables:
        if table.num_rows == 0:
            continue
        bc = spark.sparkContext.broadcast(shard_value(table))

        def body(batches, _bc=bc):
            value = _bc.value
            return topk_batches(batches, value["ids"], value["matrix"], k, block_rows)

        parts.append(user_vectors.select(c.USER_ID, "embedding").mapInArrow(
            body, "user_id string, item_id string, cosine double"))
    if sharded:
        numbered.unpersist()
    if not parts:
        return spark.createDataFrame([], "user_id string, item_id string, cosine double")
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    if len(parts) == 1:
        return union
    best = Window.partitionBy(c.USER_ID).orderBy(F.col("cosine").desc(), F.col(c.ITEM_ID))
    return union.withColumn("_r", F.row_number().over(best)).where(F.col("_r") <= k).drop("_r")


def recency(days: Column, half_life_days: float) -> Column:
    """``2^(-days / half_life_days)``: 1 now, 1/2 one half-life ago."""
    return F.pow(F.lit(2.0), -days / half_life_days)


def decayed_popularity(events: DataFrame, end: dt.datetime, half_life_days: float,
                       type_weights: Mapping[str, float], extra: Mapping[str, float] | None = None) -> DataFrame:
    """``(item_id, popularity)`` = log(1 + sum of type weight * 2^(-age / half-life)); ``extra``
    (``{column: half-life}``) adds the same with other half-lives, in the same pass."""
    tw = F.coalesce(lookup({k: float(v) for k, v in type_weights.items()}, F.col(c.EVENT_TYPE)), F.lit(1.0))
    age = age_days(end, F.col(c.EVENT_TS))
    cols = {"popularity": half_life_days, **(extra or {})}
    return events.groupBy(c.ITEM_ID).agg(*[F.log1p(F.sum(tw * recency(age, h))).alias(name) for name, h in cols.items()])


def fired_rules(seqs: DataFrame, rules: DataFrame, recent_items: int) -> DataFrame:
    """``(user_id, item_id, rule, rule_from)``: consequents of rules whose whole antecedent is among
    the user's newest items; the best confidence wins."""
    recent = seqs.select(c.USER_ID, F.slice(F.transform("events", lambda e: e[c.ITEM_ID]), 1, recent_items)
                         .alias("_recent"))
    anchored = recent.select(c.USER_ID, "_recent", F.explode(F.array_distinct("_recent")).alias("_first"))
    joined = anchored.join(rules.withColumn("_first", F.col("antecedent")[0]), "_first")
    fired = joined.where(F.forall("antecedent", lambda a: F.array_contains(F.col("_recent"), a)))
    best = Window.partitionBy(c.USER_ID, "consequent").orderBy(F.col("confidence").desc(), F.col("_first"))
    return (fired.withColumn("_r", F.row_number().over(best)).where("_r = 1")
            .select(c.USER_ID, F.col("consequent").alias(c.ITEM_ID), F.col("confidence").alias("rule"),
                    F.col("_first").alias("rule_from")))


def engagement(seqs: DataFrame, items: DataFrame, end: dt.datetime,
               half_life_days: float) -> tuple[DataFrame, DataFrame]:
    """The user's time-decayed interest at two granularities, from the sequence:

    - ``(user_id, item_id, engagement, engaged_type)``: how recently the user last touched the
      item, ``2^(-days since their newest event on it / half_life_days)`` (1 = at ``end``), and
      the type of that event. Recency rather than a sum of event weights: a shopper comes back to
      what they looked at yesterday more than to what they looked at often last week;
    - ``(user_id, category, category_affinity)``: the user's share of sequence weight
      (``sequences.type_weights`` x per-type decay) in each category.
    """
    ev = (seqs.select(c.USER_ID, F.posexplode("events").alias("_p", "_e"))
          .select(c.USER_ID, "_p", F.col(f"_e.{c.ITEM_ID}").alias(c.ITEM_ID),
                  F.col(f"_e.{c.EVENT_TYPE}").alias("_type"), F.col(f"_e.{c.EVENT_TS}").alias("_ts"),
                  F.col("_e.weight").alias("_w")))
    per_item = (ev.groupBy(c.USER_ID, c.ITEM_ID)
                .agg(F.max("_ts").alias("_last"), F.min_by("_type", "_p").alias("engaged_type"))
                .select(c.USER_ID, c.ITEM_ID, age_days(end, F.col("_last")).alias("days_since_touch"), "engaged_type")
                .withColumn("engagement", recency(F.col("days_since_touch"), half_life_days)))
    per_cat = (ev.join(items.select(c.ITEM_ID, c.CATEGORY), c.ITEM_ID)
               .groupBy(c.USER_ID, c.CATEGORY).agg(F.sum("_w").alias("_cw")))
    total = Window.partitionBy(c.USER_ID)
    per_cat = per_cat.select(c.USER_ID, c.CATEGORY, (F.col("_cw") / F.sum("_cw").over(total)).alias("category_affinity"))
    return per_item, per_cat


def top_popular(popularity: DataFrame, k: int) -> DataFrame:
    """The ``k`` most popular items (ties by item id): the list of a user nobody knows."""
    return popularity.orderBy(F.col("popularity").desc(), F.col(c.ITEM_ID)).limit(k)
