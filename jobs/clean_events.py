"""Clean stage: raw events and items -> events_clean, items_clean, quarantine.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/clean_events.py --date 2026-06-30 --conf conf/cluster.yaml

(``recjobs run clean --date D`` does the same with the session built from the configuration.)

Every raw row ends in exactly one place: a clean table, the quarantine (with a reason code),
or the count of duplicates removed. The identity
``raw rows = clean rows + quarantined rows + duplicates removed`` is checked, logged and stored in
``runs``. A re-run for the same date replaces that date's window of ``events_clean``, that date's
quarantine rows of this stage, and merges items again (idempotent).
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.events import day_end
from jobs.common.raw_io import (BAD_ID, FILE, MALFORMED, RAW, clean_id, has_invalid_utf8, parse_timestamp,
                                read_raw, resolve_path, truncate_text)
from jobs.common.errors import InputError
from jobs.common.runlog import StageRecord
from jobs.common.settings import CleanSettings
from schemas import columns as c
from schemas.tables import RAW_EVENTS, RAW_ITEMS
from udfs.text_bytes import escaped_utf8_udf

log = logging.getLogger(__name__)

STAGE = "clean"

# Reason codes written to quarantine.reason, in the order they are checked.
EVENT_REASONS = {
    "malformed_record": "the line could not be parsed against the raw events schema",
    "invalid_utf8": "the record held bytes that are not valid UTF-8",
    "invalid_id_type": "an id (event_id, user_id, item_id) is neither a string nor an integer",
    "missing_user_id": "user_id is null or blank",
    "reserved_user_id": f"user_id is {c.DEFAULT_USER!r}, the id of the default list in recommendations",
    "missing_item_id": "item_id is null or blank",
    "invalid_event_type": "event_type is not one of clean.event_types",
    "unparseable_timestamp": "ts is neither ISO-8601 nor epoch seconds/milliseconds",
    "future_timestamp": "ts lies after the end of the run date",
    "before_window": "ts lies before the clean window (clean.window_days)",
    "invalid_rating": "rating outside [clean.rating_min, clean.rating_max]",
    "unknown_item": "item_id is not in items_clean",
    "bot_user": "a bot rule took the user: clean.bot_max_events_per_hour events of clean.bot_event_types, "
                "or clean.bot_relative_factor x the median busiest hour, in some clock hour",
}
ITEM_REASONS = {
    "malformed_record": "the line could not be parsed against the raw items schema",
    "invalid_utf8": "the record held bytes that are not valid UTF-8",
    "invalid_id_type": "item_id is neither a string nor an integer",
    "missing_item_id": "item_id is null or blank",
    "missing_title": "title is null or blank",
    "negative_price": "price is below zero",
    "unparseable_updated_at": "updated_at is set but is neither ISO-8601 nor epoch",
}
REASON = "_reason"
DEDUP_KEY = "_dedup_key"


@dataclass(frozen=True)
class Window_:
    """The half-open time window [start, end) that one clean run owns."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def for_date(cls, ds: dt.date, days: int) -> "Window_":
        end = day_end(ds)
        return cls(end - dt.timedelta(days=days), end)

    @property
    def first_date(self) -> dt.date:
        return self.start.date()


def _first_reason(checks: Sequence[tuple[str, Column]]) -> Column:
    """The first failing check's code, or NULL when every check passes."""
    expr = None
    for code, failed in checks:
        expr = F.when(failed, F.lit(code)) if expr is None else expr.when(failed, F.lit(code))
    return expr.otherwise(F.lit(None).cast("string"))


# ---------------------------------------------------------------------------------- events
def normalise_events(raw: DataFrame, max_text_length: int) -> DataFrame:
    """Trim ids, lower-case event types, parse timestamps to UTC, cut over-long texts."""
    text, cut = truncate_text(F.col(c.REVIEW_TEXT), max_text_length)
    return raw.select(
        clean_id(F.col(c.EVENT_ID)).alias(c.EVENT_ID),
        clean_id(F.col(c.USER_ID)).alias(c.USER_ID),
        clean_id(F.col(c.ITEM_ID)).alias(c.ITEM_ID),
        F.lower(F.trim(F.col(c.EVENT_TYPE))).alias(c.EVENT_TYPE),
        F.col(c.TS),
        parse_timestamp(F.col(c.TS)).alias(c.EVENT_TS),
        F.col(c.RATING),
        text.alias(c.REVIEW_TEXT),
        cut.alias(c.TEXT_TRUNCATED),
        RAW, FILE, MALFORMED, BAD_ID,
    )


def classify_events(
    events: DataFrame,
    known_items: DataFrame,
    window: Window_,
    event_types: Sequence[str],
    rating_min: float,
    rating_max: float,
) -> DataFrame:
    """Add ``_reason``: the first rule a normalised event breaks, NULL for a good event.

    ``known_items`` holds one column ``item_id`` (the clean catalogue).
    """
    known = known_items.select(F.col(c.ITEM_ID).alias("_known_item")).distinct()
    joined = events.join(known, events[c.ITEM_ID] == known["_known_item"], "left")
    ts = F.col(c.EVENT_TS)
    reason = _first_reason([
        ("malformed_record", F.col(MALFORMED)),
        ("invalid_utf8", has_invalid_utf8(F.col(RAW))),
        ("invalid_id_type", F.col(BAD_ID).isNotNull()),
        ("missing_user_id", F.col(c.USER_ID).isNull()),
        ("reserved_user_id", F.col(c.USER_ID) == F.lit(c.DEFAULT_USER)),
        ("missing_item_id", F.col(c.ITEM_ID).isNull()),
        ("invalid_event_type", F.col(c.EVENT_TYPE).isNull() | ~F.col(c.EVENT_TYPE).isin(list(event_types))),
        ("unparseable_timestamp", ts.isNull()),
        ("future_timestamp", ts >= F.lit(window.end)),
        ("before_window", ts < F.lit(window.start)),
        ("invalid_rating", F.col(c.RATING).isNotNull()
         & ((F.col(c.RATING) < rating_min) | (F.col(c.RATING) > rating_max) | F.isnan(F.col(c.RATING)))),
        ("unknown_item", F.col("_known_item").isNull()),
    ])
    return joined.withColumn(REASON, reason).drop("_known_item")


def dedup_events(valid: DataFrame) -> DataFrame:
    """One row per event: same event_id, or (no id) same user, item, type and timestamp.

    Events without an id get a stable id derived from those fields. The kept copy is chosen
    deterministically (source file, then raw record) so re-runs keep the same rows.
    """
    natural = F.sha2(F.concat_ws("\u0001", c.USER_ID, c.ITEM_ID, c.EVENT_TYPE,
                                 F.col(c.EVENT_TS).cast("string")), 256)
    keyed = valid.withColumn(DEDUP_KEY, F.coalesce(F.col(c.EVENT_ID), F.concat(F.lit("h:"), natural)))
    order = Window.partitionBy(DEDUP_KEY).orderBy(F.col(FILE).asc_nulls_last(), F.col(RAW).asc())
    return (keyed.withColumn("_rn", F.row_number().over(order)).where("_rn = 1")
            .withColumn(c.EVENT_ID, F.col(DEDUP_KEY)).drop("_rn", DEDUP_KEY))


BOT_RULES = ("browsing_rate", "relative_rate")


def bot_users(events: DataFrame, max_per_hour: int, bot_event_types: Sequence[str],
              relative_factor: float | None) -> tuple[DataFrame, dict]:
    """``(user_id, bot_rule)`` of the users a bot rule takes, and the rules' figures.

    - ``browsing_rate``: more than ``max_per_hour`` events of ``bot_event_types`` in some clock hour;
    - ``relative_rate``: more events of any type in some clock hour than ``relative_factor`` x the
      median over users of their busiest hour, and more than ``max_per_hour`` (None: off). The
      median moves little when a few users are bots, which a high quantile would not.
    """
    hourly = (events.groupBy(c.USER_ID, F.date_trunc("hour", c.EVENT_TS).alias("_hour"))
              .agg(F.count("*").alias("_all"),
                   F.sum(F.col(c.EVENT_TYPE).isin(list(bot_event_types)).cast("int")).alias("_browse")))
    peaks = hourly.groupBy(c.USER_ID).agg(F.max("_all").alias("_peak"), F.max("_browse").alias("_peak_browse"))
    info: dict = {"browsing_limit": max_per_hour, "browsing_types": list(bot_event_types)}
    rule = F.when(F.col("_peak_browse") > max_per_hour, F.lit("browsing_rate"))
    if relative_factor is not None:
        median = peaks.agg(F.percentile_approx("_peak", 0.5)).first()[0]      # one number
        limit = max(float(max_per_hour), float(relative_factor) * float(median or 0))
        info.update({"median_busiest_hour": median, "relative_limit": limit})
        rule = rule.when(F.col("_peak") > F.lit(limit), F.lit("relative_rate"))
    return peaks.select(c.USER_ID, rule.alias("bot_rule")).where(F.col("bot_rule").isNotNull()), info


def flag_bots(events: DataFrame, bots: DataFrame) -> DataFrame:
    """Set ``_reason = 'bot_user'`` on every event of the users in ``bots`` (``user_id``, ``bot_rule``)."""
    return (events.join(bots.select(c.USER_ID, F.col("bot_rule").alias("_bot_rule")), c.USER_ID, "left")
            .withColumn(REASON, F.when(F.col("_bot_rule").isNotNull(), F.lit("bot_user")).otherwise(F.col(REASON)))
            .drop("_bot_rule"))


def to_events_clean(good: DataFrame, run_id: str) -> DataFrame:
    """Shape accepted events for the events_clean table."""
    return good.select(
        c.EVENT_ID, c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.EVENT_TS, c.RATING, c.REVIEW_TEXT,
        c.TEXT_TRUNCATED, F.col(FILE).alias(c.SOURCE_FILE), F.lit(run_id).alias(c.RUN_ID),
        F.to_date(c.EVENT_TS).alias(c.EVENT_DATE))


# ----------------------------------------------------------------------------------- items
def normalise_items(raw: DataFrame, max_text_length: int) -> DataFrame:
    """Trim ids and texts, split tags, parse updated_at, cut over-long texts."""
    title, title_cut = truncate_text(F.trim(F.col(c.TITLE)), max_text_length)
    desc, desc_cut = truncate_text(F.trim(F.col(c.DESCRIPTION)), max_text_length)
    tags = F.filter(F.transform(F.split(F.coalesce(F.col(c.TAGS), F.lit("")), r"\|"), lambda x: F.trim(x)),
                    lambda x: x != "")
    return raw.select(
        clean_id(F.col(c.ITEM_ID)).alias(c.ITEM_ID),
        F.when(F.trim(F.col(c.TITLE)) == "", None).otherwise(title).alias(c.TITLE),
        F.trim(F.col(c.CATEGORY)).alias(c.CATEGORY),
        F.trim(F.col(c.BRAND)).alias(c.BRAND),
        F.col(c.PRICE),
        desc.alias(c.DESCRIPTION),
        tags.alias(c.TAGS),
        F.col(c.UPDATED_AT).alias("_updated_raw"),
        parse_timestamp(F.col(c.UPDATED_AT)).alias(c.UPDATED_AT),
        (title_cut | desc_cut).alias(c.TEXT_TRUNCATED),
        RAW, FILE, MALFORMED, BAD_ID,
    )


def classify_items(items: DataFrame) -> DataFrame:
    """Add ``_reason`` to normalised items (NULL for a good item)."""
    return items.withColumn(REASON, _first_reason([
        ("malformed_record", F.col(MALFORMED)),
        ("invalid_utf8", has_invalid_utf8(F.col(RAW))),
        ("invalid_id_type", F.col(BAD_ID).isNotNull()),
        ("missing_item_id", F.col(c.ITEM_ID).isNull()),
        ("missing_title", F.col(c.TITLE).isNull()),
        ("negative_price", F.col(c.PRICE) < 0),
        ("unparseable_updated_at", F.col("_updated_raw").isNotNull() & F.col(c.UPDATED_AT).isNull()),
    ]))


def latest_items(valid: DataFrame, default_version: dt.datetime) -> DataFrame:
    """Keep the newest version of each item (updated_at desc, then raw record for a tie)."""
    versioned = valid.withColumn(c.UPDATED_AT, F.coalesce(F.col(c.UPDATED_AT), F.lit(default_version)))
    order = Window.partitionBy(c.ITEM_ID).orderBy(F.col(c.UPDATED_AT).desc(), F.col(RAW).desc())
    return versioned.withColumn("_rn", F.row_number().over(order)).where("_rn = 1").drop("_rn")


def to_items_clean(latest: DataFrame, run_id: str, ds: dt.date) -> DataFrame:
    """Shape accepted items for the items_clean table."""
    return latest.select(
        c.ITEM_ID, c.TITLE, c.CATEGORY, c.BRAND, c.PRICE, c.DESCRIPTION, c.TAGS, c.UPDATED_AT,
        c.TEXT_TRUNCATED, F.col(FILE).alias(c.SOURCE_FILE), F.lit(run_id).alias(c.RUN_ID),
        F.lit(ds).alias(c.DS))


def to_quarantine(rejected: DataFrame, source: str, ds: dt.date, run_id: str) -> DataFrame:
    """Shape rejected rows for the quarantine table: the raw record as valid UTF-8 (bytes that are
    not valid UTF-8 escaped as ``\\xNN``, so that any reader can open the table) and its original
    bytes."""
    raw = F.col(RAW)
    readable = F.when(F.is_valid_utf8(raw), raw).otherwise(escaped_utf8_udf()(raw.cast("binary")))
    return rejected.select(
        F.lit(ds).alias(c.DS), F.lit(STAGE).alias(c.STAGE), F.lit(source).alias(c.SOURCE),
        F.col(FILE).alias(c.SOURCE_FILE), F.col(REASON).alias(c.REASON), readable.alias(c.RAW_RECORD),
        raw.cast("binary").alias(c.RAW_BYTES), F.lit(run_id).alias(c.RUN_ID),
        F.current_timestamp().alias(c.QUARANTINED_AT))


def _reason_counts(df: DataFrame) -> dict[str, int]:
    # bounded: one row per reason code
    return {r[REASON]: r["count"] for r in df.groupBy(REASON).count().collect()}


# ------------------------------------------------------------------------------------ stage
def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Clean one run date. Returns the counts (also put in ``rec.details`` for ``runs``).

    Raises:
        InputError: An input path is missing or unreadable, breaks the input contract
            (``jobs/common/raw_io.py``), or holds no events (unless ``clean.allow_empty_input``).
    """
    rec = rec or StageRecord()
    s = CleanSettings.from_config(cfg)
    window = Window_.for_date(ds, s.window_days)
    max_text = s.max_text_length
    read_opts = dict(fmt=s.input_format, csv_separator=s.csv_separator, csv_header=s.csv_header)
    items_path = resolve_path(s.items_path, ds)
    events_path = resolve_path(s.events_path, ds)

    # Both inputs are read (and their contracts checked) before anything is written.
    raw_items = read_raw(spark, items_path, schema=RAW_ITEMS, conf_key="input.items_path", **read_opts)
    raw_events = read_raw(spark, events_path, schema=RAW_EVENTS, conf_key="input.events_path", **read_opts)
    if not s.allow_empty_input and raw_events.isEmpty():
        raise InputError(f"input path {events_path} (key input.events_path) holds no events for {ds}: cleaning it "
                         f"would empty the window of events_clean; fix the path, or set "
                         f"clean.allow_empty_input: true if a day without events is expected")

    # Items first: the events check item ids against the merged catalogue.
    items = classify_items(normalise_items(raw_items, max_text)).persist()
    raw_items_n = items.count()
    item_reasons = _reason_counts(items)
    valid_items = items.where(F.col(REASON).isNull())
    latest = latest_items(valid_items, window.start).persist()
    items_kept = latest.count()
    items_superseded = item_reasons.get(None, 0) - items_kept
    delta_io.merge_latest(to_items_clean(latest, run_id, ds), cfg, "items_clean", c.ITEM_ID, c.UPDATED_AT)
    known_items = delta_io.read_table(spark, cfg, "items_clean").select(c.ITEM_ID)

    events = classify_events(
        normalise_events(raw_events, max_text), known_items, window,
        s.event_types, float(s.rating_min), float(s.rating_max),
    ).persist()
    raw_events_n = events.count()
    deduped = dedup_events(events.where(F.col(REASON).isNull()))
    deduped = deduped.persist()
    bots, bot_info = bot_users(deduped, s.bot_max_events_per_hour, s.bot_event_types, s.bot_relative_factor)
    bots = bots.persist()
    by_rule = dict(bots.groupBy("bot_rule").count().collect())            # one row per rule
    flagged = flag_bots(deduped, bots).persist()
    deduped_n = flagged.count()
    event_counts = _reason_counts(events)
    valid_events_n = event_counts.get(None, 0)
    event_reasons = {r: n for r, n in event_counts.items() if r is not None}
    bot_n = flagged.where(F.col(REASON) == "bot_user").count()
    bot_events_by_rule = dict(flagged.where(F.col(REASON) == "bot_user").join(bots, c.USER_ID)
                              .groupBy("bot_rule").count().collect())
    if bot_n:
        event_reasons["bot_user"] = bot_n
    duplicates = valid_events_n - deduped_n

    quarantine = to_quarantine(events.where(F.col(REASON).isNotNull()), "events", ds, run_id) \
        .unionByName(to_quarantine(flagged.where(F.col(REASON).isNotNull()), "events", ds, run_id)) \
        .unionByName(to_quarantine(items.where(F.col(REASON).isNotNull()), "items", ds, run_id))
    delta_io.replace_where(quarantine, cfg, "quarantine", f"ds = DATE'{ds.isoformat()}' AND stage = '{STAGE}'")

    good = to_events_clean(flagged.where(F.col(REASON).isNull()), run_id)
    delta_io.replace_where(
        good, cfg, "events_clean",
        f"event_date >= DATE'{window.first_date.isoformat()}' AND event_date <= DATE'{ds.isoformat()}'")
    clean_n = deduped_n - bot_n

    quarantined_events = sum(event_reasons.values())
    quarantined_items = sum(n for r, n in item_reasons.items() if r is not None)
    summary = {
        "window": [window.start.isoformat(), window.end.isoformat()],
        "events": {"raw": raw_events_n, "clean": clean_n, "quarantined": quarantined_events,
                   "duplicates_removed": duplicates, "by_reason": dict(sorted(event_reasons.items())),
                   "identity_holds": raw_events_n == clean_n + quarantined_events + duplicates},
        "items": {"raw": raw_items_n, "clean": items_kept, "quarantined": quarantined_items,
                  "duplicates_removed": items_superseded,
                  "by_reason": dict(sorted((r, n) for r, n in item_reasons.items() if r is not None)),
                  "identity_holds": raw_items_n == items_kept + quarantined_items + items_superseded},
        "bots": {"users": sum(by_rule.values()), "events": bot_n,
                 "share_of_events": round(bot_n / raw_events_n, 6) if raw_events_n else 0.0,
                 "users_by_rule": {r: by_rule.get(r, 0) for r in BOT_RULES},
                 "events_by_rule": {r: bot_events_by_rule.get(r, 0) for r in BOT_RULES}, **bot_info},
        "paths": {name: delta_io.table_path(cfg, name) for name in ("events_clean", "items_clean", "quarantine")},
    }
    accounts = []
    for part in ("events", "items"):
        p = summary[part]
        accounts.append(f"{part}: raw {p['raw']} = clean {p['clean']} + quarantined {p['quarantined']} + duplicates "
                        f"removed {p['duplicates_removed']} (identity {'holds' if p['identity_holds'] else 'BROKEN'}; "
                        f"quarantined by reason {p['by_reason']})")
        log.info("%s", accounts[-1])
    b = summary["bots"]
    accounts.append(f"bots: {b['users']} users, {b['events']} events ({100 * b['share_of_events']:.1f}% of raw events)")
    summary["line"] = "; ".join(accounts)
    for df in (items, latest, events, deduped, bots, flagged):
        df.unpersist()
    if not (summary["events"]["identity_holds"] and summary["items"]["identity_holds"]):
        raise RuntimeError(f"reconciliation identity broken: {summary}")
    rec.rows_in = raw_events_n + raw_items_n
    rec.rows_out = clean_n + items_kept
    rec.details.update(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
