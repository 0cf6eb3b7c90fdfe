"""What must never be recommended: items consumed (by event type) or reviewed negatively.

The ranker removes these pairs, the validate stage checks that none was published and the
evaluation applies the same set to every model.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas import columns as c


def negative_reviews(user_item_sentiment: DataFrame, ds: dt.date, threshold: float) -> DataFrame:
    """(user_id, item_id) of items the user reviewed at or below ``threshold`` (as of ds)."""
    return (user_item_sentiment.where((F.col(c.DS) == F.lit(ds)) & (F.col("score") <= threshold))
            .select(c.USER_ID, c.ITEM_ID))


def consumed(events: DataFrame, ds: dt.date, exclude_types: Sequence[str]) -> DataFrame:
    """(user_id, item_id) the user had an event of one of ``exclude_types`` with, up to ds."""
    return (events.where((F.col(c.EVENT_DATE) <= F.lit(ds)) & F.col(c.EVENT_TYPE).isin(list(exclude_types)))
            .select(c.USER_ID, c.ITEM_ID))


def excluded_pairs(events: DataFrame, user_item_sentiment: DataFrame, ds: dt.date, exclude_types: Sequence[str],
                   negative_threshold: float) -> DataFrame:
    """(user_id, item_id) pairs that must never be recommended on ds: consumed (an event of one of
    ``exclude_types``) or reviewed at or below ``negative_threshold``."""
    excluded = negative_reviews(user_item_sentiment, ds, negative_threshold)
    if exclude_types:
        excluded = excluded.unionByName(consumed(events, ds, exclude_types))
    return excluded.distinct()
