"""build_sequences: per user, the last L events with time-decayed weights, sessions and text.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/build_sequences.py --date 2026-06-30 --conf conf/cluster.yaml

Reads ``events_clean`` (the ``sequences.lookback_days`` days ending with ds) and ``items_clean``;
writes the ds partition of ``user_sequences``. An event's weight is
``type_weight[type] * exp(-ln 2 * age_days / half_life_days[type])`` with the age measured from
the end of ds. A gap over ``sequences.session_gap_minutes`` starts a new session.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.events import age_days, day_end, decay_weight, lookup, sessionize
from jobs.common.runlog import StageRecord
from jobs.common.settings import SequenceSettings
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "build_sequences"


def sequence_events(
    events: DataFrame,
    items: DataFrame,
    end: dt.datetime,
    lookback_days: int,
    max_len: int,
    session_gap_minutes: float,
    type_weights: Mapping[str, float],
    half_life_days: Mapping[str, float],
    col_user: str = c.USER_ID,
    col_item: str = c.ITEM_ID,
    col_ts: str = c.EVENT_TS,
) -> DataFrame:
    """The last ``max_len`` events per user before ``end`` within the lookback, with weight,
    session id, rank (``rn`` 1 = newest) and the item's title and category."""
    start = end - dt.timedelta(days=lookback_days)
    window = events.where((F.col(col_ts) >= F.lit(start)) & (F.col(col_ts) < F.lit(end)))
    age = age_days(end, F.col(col_ts))
    newest_first = Window.partitionBy(col_user).orderBy(F.col(col_ts).desc(), F.col(c.EVENT_ID).desc())
    ranked = (sessionize(window, session_gap_minutes, col_user, col_ts)
              .withColumn("weight", decay_weight(F.col(c.EVENT_TYPE), age, type_weights, half_life_days))
              .withColumn("rn", F.row_number().over(newest_first))
              .where(F.col("rn") <= max_len))
    meta = items.select(F.col(c.ITEM_ID).alias(col_item), c.TITLE, c.CATEGORY)
    return (ranked.join(meta, col_item, "left")
            .select(col_user, "rn", col_item, c.EVENT_TYPE, col_ts, "weight", c.SESSION_ID, c.TITLE, c.CATEGORY))


def sequence_text(entries: Column, max_chars: int) -> Column:
    """Join entries with "; " and cut at the last whole entry that fits in ``max_chars``."""
    full = F.array_join(entries, "; ")
    head = F.substring(full, 1, max_chars)
    cut = F.when(F.instr(head, ";") > 0, F.regexp_extract(head, r"^(.*);", 1)).otherwise(head)
    return F.when(F.length(full) <= max_chars, full).otherwise(cut)


def build_user_sequences(seq_events: DataFrame, verbs: Mapping[str, str], max_chars: int,
                         col_user: str = c.USER_ID) -> DataFrame:
    """One row per user: the events newest first, the sequence text and counts."""
    verb = F.coalesce(lookup(dict(verbs), F.col(c.EVENT_TYPE)), F.col(c.EVENT_TYPE))
    what = F.coalesce(F.col(c.TITLE), F.col(c.ITEM_ID))
    entry = F.when(F.col(c.CATEGORY).isNotNull(),
                   F.format_string("%s: %s (%s)", verb, what, F.col(c.CATEGORY))) \
             .otherwise(F.format_string("%s: %s", verb, what))
    packed = F.struct("rn", c.ITEM_ID, c.EVENT_TYPE, c.EVENT_TS, "weight", c.SESSION_ID, entry.alias("entry"))
    grouped = seq_events.groupBy(col_user).agg(
        F.array_sort(F.collect_list(packed)).alias("_seq"),     # sorts by rn: newest first
        F.countDistinct(c.SESSION_ID).alias("n_sessions"),
        F.max(c.EVENT_TS).alias("last_event_ts"))
    events = F.transform("_seq", lambda s: F.struct(
        s[c.ITEM_ID].alias(c.ITEM_ID), s[c.EVENT_TYPE].alias(c.EVENT_TYPE), s[c.EVENT_TS].alias(c.EVENT_TS),
        s["weight"].alias("weight"), s[c.SESSION_ID].alias(c.SESSION_ID)))
    return grouped.select(
        col_user, events.alias("events"),
        sequence_text(F.transform("_seq", lambda s: s["entry"]), max_chars).alias("seq_text"),
        F.size("_seq").alias("n_events"), F.col("n_sessions").cast("int").alias("n_sessions"), "last_event_ts")


def carried_forward(previous: DataFrame, fresh_users: DataFrame, previous_ds: dt.date) -> DataFrame:
    """The profiles of ``previous`` (an earlier run's sequences) whose user has no fresh sequence:
    kept as they were, with the date they were built for (``profile_ds``)."""
    return (previous.join(fresh_users, c.USER_ID, "left_anti")
            .withColumn("profile_ds", F.coalesce(F.col("profile_ds"), F.lit(previous_ds))))


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Build ``user_sequences`` for ds: fresh sequences from the window, plus the last profile of
    every user of the newest earlier run who has no event in the window."""
    rec = rec or StageRecord()
    s = SequenceSettings.from_config(cfg)
    events = delta_io.read_table(spark, cfg, "events_clean").where(
        F.col(c.EVENT_DATE) >= F.lit(ds - dt.timedelta(days=s.lookback_days)))
    items = delta_io.read_table(spark, cfg, "items_clean")
    seq_events = sequence_events(events, items, day_end(ds), s.lookback_days, s.max_len, s.session_gap_minutes,
                                 s.type_weights, s.half_life_days)
    fresh = build_user_sequences(seq_events, s.verbs, s.max_text_chars).withColumn("profile_ds", F.lit(ds))
    stored = delta_io.read_table(spark, cfg, "user_sequences")
    previous_ds = stored.where(F.col(c.DS) < F.lit(ds)).agg(F.max(c.DS)).first()[0]     # partition listing
    sequences = fresh
    if previous_ds is not None:
        previous = stored.where(F.col(c.DS) == F.lit(previous_ds)).drop(c.DS, c.RUN_ID)
        sequences = fresh.unionByName(carried_forward(previous, fresh.select(c.USER_ID), previous_ds))
    sequences = sequences.withColumn(c.DS, F.lit(ds)).withColumn(c.RUN_ID, F.lit(run_id))
    delta_io.replace_where(sequences, cfg, "user_sequences", f"ds = DATE'{ds.isoformat()}'")
    written = delta_io.read_table(spark, cfg, "user_sequences").where(F.col(c.DS) == F.lit(ds))
    stats = written.agg(F.count("*").alias("users"), F.sum("n_events").alias("events"),
                        F.avg("n_events").alias("avg_len"),
                        F.sum((F.col("profile_ds") < F.lit(ds)).cast("int")).alias("carried")).first()
    summary = {"users": stats["users"], "events": int(stats["events"] or 0),
               "avg_len": round(float(stats["avg_len"] or 0), 2), "carried_forward": int(stats["carried"] or 0),
               "carried_from": previous_ds.isoformat() if previous_ds else None,
               "path": delta_io.table_path(cfg, "user_sequences")}
    line = (f"sequences: {summary['users']} users ({summary['carried_forward']} carried forward without events in "
            f"the last {s.lookback_days} days), {summary['events']} events (mean length {summary['avg_len']})")
    return rec.finish(STAGE, summary, rows_out=summary["users"], line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
