"""Column functions over events that several stages share: map lookups, ages, time decay, sessions.

Pure ``Column``/``DataFrame`` functions taking plain values; no I/O.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Mapping

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from schemas import columns as c


def lookup(mapping: Mapping[str, object], key: Column) -> Column:
    """``mapping[key]`` as a column (NULL for a key the mapping lacks)."""
    return F.create_map(*[F.lit(x) for kv in mapping.items() for x in kv])[key]


def day_end(ds: dt.date) -> dt.datetime:
    """The end of the run date ds: midnight that starts the next day (the clock of every age)."""
    return dt.datetime.combine(ds + dt.timedelta(days=1), dt.time())


def age_days(end: dt.datetime, ts: Column) -> Column:
    """Days from the timestamp ``ts`` to ``end`` (fractional; the clock of the session time zone)."""
    return (F.lit(end).cast("long") - ts.cast("long")) / 86400.0


def decay_weight(event_type: Column, age: Column, type_weights: Mapping[str, float],
                 half_life_days: Mapping[str, float]) -> Column:
    """``type_weight * exp(-ln 2 * age / half_life)`` for each event (both per event type)."""
    tw = lookup({k: float(v) for k, v in type_weights.items()}, event_type)
    hl = lookup({k: float(v) for k, v in half_life_days.items()}, event_type)
    return tw * F.exp(-F.lit(math.log(2.0)) * age / hl)


def sessionize(events: DataFrame, gap_minutes: float, col_user: str = c.USER_ID,
               col_ts: str = c.EVENT_TS) -> DataFrame:
    """Add ``session_id``: a gap of more than ``gap_minutes`` between a user's events starts a
    new session; the id is the user and the session's first timestamp (stable across days)."""
    by_time = Window.partitionBy(col_user).orderBy(F.col(col_ts), F.col(c.EVENT_ID))
    gap_s = F.col(col_ts).cast("long") - F.lag(F.col(col_ts).cast("long")).over(by_time)
    numbered = (events
                .withColumn("_new", F.when(gap_s.isNull() | (gap_s > gap_minutes * 60), 1).otherwise(0))
                .withColumn("_session_no", F.sum("_new").over(by_time.rowsBetween(Window.unboundedPreceding, 0))))
    session_start = F.min(col_ts).over(Window.partitionBy(col_user, "_session_no"))
    return (numbered.withColumn(c.SESSION_ID, F.concat_ws("@", F.col(col_user),
                                                          F.date_format(session_start, "yyyyMMdd'T'HHmmss")))
            .drop("_new", "_session_no"))
