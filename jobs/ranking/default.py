"""The default list: what a user nobody knows gets (no history at all), stored under
``schemas.columns.DEFAULT_USER`` in the recommendation tables."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.settings import RankSettings
from jobs.ranking.blend import top_n
from jobs.ranking.candidates import top_popular
from jobs.ranking.reasons import render
from schemas import columns as c
from schemas.components import FALLBACK, by_name


def default_list(popularity: DataFrame, items: DataFrame, item_topics: DataFrame, topic_terms: DataFrame,
                 s: RankSettings) -> DataFrame:
    """The ``top_n`` most popular items (decayed popularity, at most ``max_per_category`` per
    category) as rows of ``DEFAULT_USER``: rank, item, score (the popularity), reason and
    ``reason_kind`` (the popularity component's), and the raw ``popularity`` column."""
    terms = topic_terms.select(F.col("topic").alias("_itop"), F.array_join(F.slice("terms", 1, 3), ", ").alias("_t"))
    pool = (top_popular(popularity, s.popular_k).join(items, c.ITEM_ID)
            .join(item_topics.select(c.ITEM_ID, F.col("top_topic").alias("_itop")), c.ITEM_ID, "left")
            .join(terms, "_itop", "left")
            .select(F.lit(c.DEFAULT_USER).alias(c.USER_ID), c.ITEM_ID, c.CATEGORY, "popularity",
                    F.col("popularity").alias("score"), F.lit(None).cast("string").alias("engaged_type"),
                    F.coalesce("_t", c.CATEGORY).alias("item_terms")))
    ranked = top_n(pool, s.top_n, s.max_per_category)
    return (ranked.withColumn("reason", render(by_name(FALLBACK).reason, "the catalogue")[1])
            .withColumn("reason_kind", F.lit(FALLBACK)))
