"""The ranker's candidate features: every (user, candidate) of a date with its raw components.

:func:`candidate_features` is a context manager: it owns the frames it caches and releases them
on exit, so callers (the rank stage, the evaluation) never unpersist anything themselves.
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.events import day_end
from jobs.common.settings import RankSettings
from jobs.ranking.candidates import (decayed_popularity, dot, engagement, fired_rules, recency, retrieve,
                                     top_popular)
from jobs.ranking.exclusions import excluded_pairs, negative_reviews
from jobs.ranking.neighbours import best_per_user, neighbour_sums, user_items
from schemas import columns as c

HALF_LIFE_COMPONENTS = ("engagement", "popularity")


def grid_column(component: str, half_life: float) -> str:
    """The candidate-feature column of ``component`` computed with ``half_life`` days
    (``engagement_hl0p5`` for half a day: no dots, which column paths would split)."""
    return f"{component}_hl{float(half_life):g}".replace(".", "p")

Reader = Callable[[str], DataFrame]

# The vectors joined onto every candidate to compute its components (user and item language-model
# vectors, sequence-model vectors, topic distributions): hundreds of floats a row, needed by
# nothing after the components but the reasons' item vector (``_iv``).
VECTOR_COLUMNS = ("_uv", "_su", "_si", "_iv", "_ut", "_it")


def without_vectors(features: DataFrame) -> DataFrame:
    """The candidate features without :data:`VECTOR_COLUMNS`: what a frame that is cached and
    ranked without reasons (hold-outs, the evaluation) keeps, a few dozen numbers a row."""
    return features.drop(*VECTOR_COLUMNS)


@dataclass(frozen=True)
class RankingData:
    """What one ranking of a date works with (valid inside :func:`candidate_features`).

    Attributes:
        features: One row per (user, candidate): the raw components, ``engaged_type``, title and category, and the
            helper columns the reasons need (``_iv``, ``rule_from``, ``nb_from``, ``_utop``, ``_itop``,
            ``_sanchor``/``_satype``: the sequence model's anchor item and the event on it).
        sequences: ``(user_id, events)`` of the date.
        item_vectors: ``(item_id, _iv)``.
        items: ``(item_id, title, category)``.
        users: The users ranked (those with a sequence).
        popularity: ``(item_id, popularity)``.
    """

    features: DataFrame
    sequences: DataFrame
    item_vectors: DataFrame
    items: DataFrame
    users: DataFrame
    popularity: DataFrame


@contextmanager
def candidate_features(read: Reader, ds: dt.date, s: RankSettings,
                       half_life_grid: Mapping | None = None) -> Iterator[RankingData]:
    """Build the candidate features of ``ds`` from the tables ``read`` returns (a lake's reader).

    Candidates: (a) embedding retrieval, (a') the sequence model's top ``sequence_k`` (its user
    vectors against its item output vectors), (a'') the ``neighbour_k`` largest sums of the item
    neighbours of the user's items (``item_neighbours``), (b) fired rules, (c) the users' own
    sequence items, (d) the ``popular_k`` most popular items for everyone; minus the excluded pairs.

    ``half_life_grid`` (``{"engagement": [days ...], "popularity": [days ...]}``) adds the two
    components computed with each of those half-lives (``engagement_hl<h>``, ``popularity_hl<h>``: :func:`grid_column`), for
    the learned blend to choose from.
    """
    grid = {comp: [float(h) for h in (half_life_grid or {}).get(comp) or []] for comp in HALF_LIFE_COMPONENTS}
    end = day_end(ds)
    on_ds = F.col(c.DS) == F.lit(ds)
    items = read("items_clean").select(c.ITEM_ID, c.TITLE, c.CATEGORY)
    seqs = read("user_sequences").where(on_ds).select(c.USER_ID, "events").persist(StorageLevel.MEMORY_AND_DISK)
    users = seqs.select(c.USER_ID)
    user_vec = read("user_embeddings").where(on_ds).select(c.USER_ID, "embedding")
    item_vec = read("item_embeddings").join(items.select(c.ITEM_ID), c.ITEM_ID).select(c.ITEM_ID, "embedding")
    history = read("events_clean").where(F.col(c.EVENT_DATE) <= F.lit(ds))
    seq_user = read("sequence_user_vectors").where(on_ds)
    seq_item = read("sequence_item_vectors").where(on_ds).select(c.ITEM_ID, "embedding")
    popularity = nb_sums = None
    try:
        retrieved = retrieve(user_vec, item_vec, s.candidates_k, s.broadcast_max_items, s.block_rows)
        # the sequence model's own top-K (nothing when no model was trained tonight)
        by_sequence = retrieve(seq_user.select(c.USER_ID, "embedding"), seq_item, s.sequence_k,
                               s.broadcast_max_items, s.block_rows)
        rules = fired_rules(seqs, read("item_rules").where(on_ds), s.recent_items)
        # item neighbours summed over each ranked user's newest items (nothing before the first fit)
        recent_history = history.where(F.col(c.EVENT_DATE) > F.lit(ds - dt.timedelta(days=s.neighbour_lookback_days)))
        mine = user_items(recent_history.join(users, c.USER_ID, "left_semi"), s.neighbour_user_items)
        nb_sums = neighbour_sums(mine, read("item_neighbours").where(on_ds)).persist(StorageLevel.MEMORY_AND_DISK)
        pop_events = history.where(F.col(c.EVENT_DATE) > F.lit(ds - dt.timedelta(days=s.popularity_lookback_days)))
        popularity = decayed_popularity(pop_events, end, s.popularity_half_life_days, s.type_weights,
                                        {grid_column("popularity", h): h for h in grid["popularity"]}
                                        ).persist(StorageLevel.MEMORY_AND_DISK)
        popular = top_popular(popularity.select(c.ITEM_ID, "popularity"), s.popular_k)
        engaged, category_share = engagement(seqs, items, end, s.engagement_half_life_days)
        candidates = (retrieved.select(c.USER_ID, c.ITEM_ID)
                      .unionByName(by_sequence.select(c.USER_ID, c.ITEM_ID))
                      .unionByName(best_per_user(nb_sums, s.neighbour_k))
                      .unionByName(rules.select(c.USER_ID, c.ITEM_ID))
                      .unionByName(engaged.select(c.USER_ID, c.ITEM_ID))           # at most sequences.max_len per user
                      .unionByName(users.crossJoin(popular.select(c.ITEM_ID)))   # users x popular_k, bounded
                      .distinct())
        sentiment = read("user_item_sentiment")
        candidates = candidates.join(excluded_pairs(read("events_clean"), sentiment, ds, s.exclude_types,
                                                    s.negative_threshold), [c.USER_ID, c.ITEM_ID], "left_anti")
        negative = negative_reviews(sentiment, ds, s.negative_threshold).withColumnRenamed(c.ITEM_ID, "neg_item")

        ivec = item_vec.withColumnRenamed("embedding", "_iv")
        user_topics = read("user_topics").where(on_ds).select(c.USER_ID, F.col("distribution").alias("_ut"),
                                                              F.col("top_topic").alias("_utop"))
        item_topics = read("item_topics").where(on_ds).select(c.ITEM_ID, F.col("distribution").alias("_it"),
                                                              F.col("top_topic").alias("_itop"))
        item_sent = read("item_sentiment").where(on_ds).select(c.ITEM_ID, F.col("smoothed_score").alias("sentiment"))
        seq_users = seq_user.select(c.USER_ID, F.col("embedding").alias("_su"), F.col("anchor_item").alias("_sanchor"),
                                    F.col("anchor_type").alias("_satype"))
        feats = (candidates
                 .join(user_vec.withColumnRenamed("embedding", "_uv"), c.USER_ID, "left")
                 .join(seq_users, c.USER_ID, "left")
                 .join(seq_item.withColumnRenamed("embedding", "_si"), c.ITEM_ID, "left")
                 .join(ivec, c.ITEM_ID, "left")
                 .join(user_topics, c.USER_ID, "left").join(item_topics, c.ITEM_ID, "left")
                 .join(item_sent, c.ITEM_ID, "left")
                 .join(rules, [c.USER_ID, c.ITEM_ID], "left")
                 .join(nb_sums, [c.USER_ID, c.ITEM_ID], "left")
                 .withColumn("neighbours", F.coalesce(F.col("neighbours"), F.lit(0.0)))
                 .join(popularity, c.ITEM_ID, "left")
                 .join(engaged, [c.USER_ID, c.ITEM_ID], "left")
                 .withColumn("engagement", F.coalesce(F.col("engagement"), F.lit(0.0)))
                 .withColumns({grid_column("engagement", h): F.coalesce(recency(F.col("days_since_touch"), h), F.lit(0.0))
                               for h in grid["engagement"]})
                 .withColumn("semantic", dot(F.col("_uv"), F.col("_iv")))
                 .withColumn("topic", dot(F.col("_ut"), F.col("_it")))
                 .withColumn("sequence", dot(F.col("_su"), F.col("_si"))))
        # similarity to negatively reviewed items, where near enough: the demoting `disliked` component
        neg_vec = negative.join(ivec.withColumnRenamed(c.ITEM_ID, "neg_item").withColumnRenamed("_iv", "_nv"),
                                "neg_item")
        near = (feats.select(c.USER_ID, c.ITEM_ID, "_iv").join(neg_vec, c.USER_ID)
                .groupBy(c.USER_ID, c.ITEM_ID).agg(F.max(dot(F.col("_iv"), F.col("_nv"))).alias("_neg_sim")))
        near_enough = F.col("_neg_sim") >= F.lit(float(s.negative_neighbour_threshold))
        feats = (feats.join(near, [c.USER_ID, c.ITEM_ID], "left")
                 .withColumn("disliked", F.when(near_enough, F.col("_neg_sim")).otherwise(F.lit(0.0))).drop("_neg_sim")
                 .join(items, c.ITEM_ID)
                 .join(category_share, [c.USER_ID, c.CATEGORY], "left")
                 .withColumn("category_affinity", F.coalesce(F.col("category_affinity"), F.lit(0.0))))
        yield RankingData(feats, seqs, ivec, items, users, popularity)
    finally:
        seqs.unpersist()
        for frame in (popularity, nb_sums):
            if frame is not None:
                frame.unpersist()
