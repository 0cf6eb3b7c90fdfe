"""Evaluation splits: which events train and which held-out (user, item) pairs test."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.errors import ConfigError
from jobs.common.settings import PROTOCOLS
from schemas import columns as c

HELD_COLUMNS = (c.USER_ID, c.ITEM_ID, c.EVENT_ID, c.EVENT_TS)


def check_protocol(protocol: str) -> None:
    """ConfigError naming ``eval.protocols`` unless ``protocol`` is one of PROTOCOLS."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"eval.protocols: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def split(events: DataFrame, protocol: str, ds: dt.date, relevant_types: Sequence[str], random_ratio: float = 0.2,
          seed: int = 17) -> tuple[DataFrame, DataFrame, dt.date]:
    """(training events, held-out (user_id, item_id, event_id, event_ts), date to build features for).

    - ``leave_last_out``: each user's last relevant event is held out; it and everything the user
      did from that moment on leave training;
    - ``next_day``: training on events before ds, testing on the relevant events of ds;
    - ``random_split``: a seeded share of each user's relevant (user, item) pairs is held out with
      every event of those pairs (views included), so training never saw the user with them.
    """
    check_protocol(protocol)
    relevant = F.col(c.EVENT_TYPE).isin(list(relevant_types))
    events = events.where(F.col(c.EVENT_DATE) <= F.lit(ds))
    held_cols = list(HELD_COLUMNS)
    if protocol == "leave_last_out":
        last = Window.partitionBy(c.USER_ID).orderBy(F.col(c.EVENT_TS).desc(), F.col(c.EVENT_ID).desc())
        test = events.where(relevant).withColumn("_r", F.row_number().over(last)).where("_r = 1").select(*held_cols)
        cut = test.select(c.USER_ID, F.col(c.EVENT_TS).alias("_held_ts"))
        train = (events.join(cut, c.USER_ID, "left")
                 .where(F.col("_held_ts").isNull() | (F.col(c.EVENT_TS) < F.col("_held_ts"))).drop("_held_ts"))
        return train, test, ds
    if protocol == "next_day":
        train = events.where(F.col(c.EVENT_DATE) < F.lit(ds))
        test = events.where(relevant & (F.col(c.EVENT_DATE) == F.lit(ds))).select(*held_cols)
        return train, test, ds - dt.timedelta(days=1)
    bucket = F.pmod(F.xxhash64(F.col(c.USER_ID), F.col(c.ITEM_ID), F.lit(int(seed))), F.lit(10_000))
    held = (events.where(relevant).select(c.USER_ID, c.ITEM_ID).distinct()
            .where(bucket < F.lit(int(float(random_ratio) * 10_000))))
    train = events.join(held, [c.USER_ID, c.ITEM_ID], "left_anti")
    test = events.where(relevant).join(held, [c.USER_ID, c.ITEM_ID]).select(*held_cols)
    return train, test, ds


def with_training_events(test: DataFrame, train: DataFrame) -> DataFrame:
    """``test`` with ``train_events``: how many of the training events are of each held-out item
    (0 for an item training never saw); below ``eval.rare_item_events`` the item counts as rare."""
    counts = train.groupBy(c.ITEM_ID).agg(F.count("*").alias("train_events"))
    return (test.join(counts, c.ITEM_ID, "left")
            .withColumn("train_events", F.coalesce(F.col("train_events"), F.lit(0))))


def evaluation_half(seed: int, user: str = c.USER_ID):
    """True for the users the offline evaluation scores under the nightly's own leave-last-out
    hold-out, when the nightly's blend learns from the other users' held-out events: a fixed
    half by a seeded hash of the id, the same users every night (so no earlier night's fit has
    seen their held-out events either)."""
    return F.pmod(F.xxhash64(F.col(user), F.lit(seed)), F.lit(2)) == F.lit(0)


def reserves_evaluation_half(train_protocol: str, eval_protocols: Sequence[str]) -> bool:
    """Whether the blend learns from half the users' held-out events only: when it learns from a
    leave-last-out hold-out and the evaluation scores that same split (then the evaluation ranks
    the other half with the nightly's own blend instead of learning one more on a nested hold-out)."""
    return train_protocol == "leave_last_out" and "leave_last_out" in eval_protocols
