"""Clean-stage transforms on small literal DataFrames: every fault kind gets its own reason."""
import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from jobs.clean_events import (REASON, Window_, bot_users, classify_events, classify_items, dedup_events, flag_bots,
                               latest_items, normalise_events, normalise_items)
from jobs.common.raw_io import BAD_ID, FILE, MALFORMED, RAW, parse_timestamp, read_raw
from schemas.tables import RAW_EVENTS, RAW_ITEMS

DS = dt.date(2026, 6, 30)
WINDOW = Window_.for_date(DS, 3)
HELPERS = [StructField(RAW, StringType()), StructField(FILE, StringType()), StructField(MALFORMED, BooleanType()),
           StructField(BAD_ID, StringType())]
TYPES = ["view", "click", "cart", "purchase", "rate", "review"]


def _raw_events(spark, rows):
    """rows: (event_id, user, item, type, ts, rating, text, raw, malformed)."""
    schema = StructType(RAW_EVENTS.fields + HELPERS)
    return spark.createDataFrame([(*r[:8], "f.jsonl", r[8], None) for r in rows], schema)


def _classify(spark, rows, known=("i1", "i2")):
    events = normalise_events(_raw_events(spark, rows), max_text_length=50)
    items = spark.createDataFrame([(i,) for i in known], "item_id string")
    return classify_events(events, items, WINDOW, TYPES, 1.0, 5.0)


def test_parse_timestamp_accepts_iso_offsets_and_epochs(spark):
    df = spark.createDataFrame([(s,) for s in [
        "2026-06-30T10:00:00Z", "2026-06-30T12:00:00+02:00", "2026-06-30 10:00:00", "1782813600",
        "1782813600000", "not-a-date", "2026-13-45T99:00:00", None]], "ts string")
    got = [r[0] for r in df.select(parse_timestamp(F.col("ts"))).collect()]
    ten = dt.datetime(2026, 6, 30, 10, 0)
    assert got[:5] == [ten] * 5
    assert got[5:] == [None, None, None]


def test_each_event_fault_gets_its_reason(spark):
    ok = "2026-06-30T10:00:00Z"
    rows = [
        ("e0", "u1", "i1", "view", ok, None, None, "{}", False),
        ("e1", None, None, None, None, None, None, "{bad", True),
        ("e2", "u\udcff", "i1", "view", ok, None, None, "{}", False),
        ("e3", "  ", "i1", "view", ok, None, None, "{}", False),
        ("e4", "u1", None, "view", ok, None, None, "{}", False),
        ("e5", "u1", "i1", "wishlist", ok, None, None, "{}", False),
        ("e6", "u1", "i1", "view", "yesterday", None, None, "{}", False),
        ("e7", "u1", "i1", "view", "2030-01-01T00:00:00Z", None, None, "{}", False),
        ("e8", "u1", "i1", "view", "2026-06-01T00:00:00Z", None, None, "{}", False),
        ("e9", "u1", "i1", "rate", ok, 9.0, None, "{}", False),
        ("e10", "u1", "zz9", "view", ok, None, None, "{}", False),
        ("e11", " u2 ", "i2", " VIEW ", "1782813600", 4.0, "x" * 80 + "😀", "{}", False),
    ]
    # invalid UTF-8 cannot be built from Python str: take a real invalid byte sequence
    got = _classify(spark, [r for r in rows if r[0] != "e2"])
    bad_bytes = spark.createDataFrame([(bytearray(b'{"user_id": "\xff\xfe"}'),)], "b binary") \
        .select(F.col("b").cast("string").alias("raw")).first()["raw"]
    got = got.unionByName(_classify(spark, [("e2", "u1", "i1", "view", ok, None, None, bad_bytes, False)]))
    reasons = {r["event_id"]: r[REASON] for r in got.collect()}
    assert reasons == {
        "e0": None, "e1": "malformed_record", "e2": "invalid_utf8", "e3": "missing_user_id",
        "e4": "missing_item_id", "e5": "invalid_event_type", "e6": "unparseable_timestamp",
        "e7": "future_timestamp", "e8": "before_window", "e9": "invalid_rating", "e10": "unknown_item",
        "e11": None,
    }
    e11 = got.where("event_id = 'e11'").first()
    assert (e11["user_id"], e11["event_type"]) == ("u2", "view")        # trimmed, lower-cased
    assert e11["event_ts"] == dt.datetime(2026, 6, 30, 10, 0)
    assert len(e11["review_text"]) == 50 and e11["text_truncated"] is True


def test_dedup_by_event_id_and_by_natural_key(spark):
    ok = "2026-06-30T10:00:00Z"
    rows = [
        ("e1", "u1", "i1", "view", ok, None, None, "a", False),
        ("e1", "u1", "i1", "view", ok, None, None, "a", False),          # exact duplicate
        (None, "u1", "i2", "view", ok, None, None, "b", False),
        (None, "u1", "i2", "view", "1782813600", None, None, "c", False),  # same event, other ts format
        (None, "u1", "i2", "click", ok, None, None, "d", False),          # different type: kept
    ]
    out = dedup_events(_classify(spark, rows))
    assert out.count() == 3
    ids = sorted(r["event_id"] for r in out.collect())
    assert ids[0] == "e1" and all(i.startswith("h:") for i in ids[1:])
    # the generated id is stable: same input, same id
    again = sorted(r["event_id"] for r in dedup_events(_classify(spark, rows)).collect())
    assert ids == again


def _bot_flags(spark, rows, **rules):
    events = _classify(spark, rows)
    bots, info = bot_users(events, **rules)
    flagged = flag_bots(events, bots)
    by_user = {r["user_id"]: r["n"] for r in
               flagged.where(F.col(REASON) == "bot_user").groupBy("user_id").agg(F.count("*").alias("n")).collect()}
    return by_user, dict(bots.select("user_id", "bot_rule").collect()), info


def _burst(user, etype, n, seconds, start=dt.datetime(2026, 6, 30, 10, 0)):
    return [(f"{user}{i}", user, "i1", etype, (start + dt.timedelta(seconds=seconds * i)).isoformat(), 4.0, None,
             "r", False) for i in range(n)]


def test_flag_bots_marks_every_event_of_a_fast_browser(spark):
    rows = _burst("bot", "view", 30, 10) + _burst("human", "view", 10, 300)
    by_user, rules, _ = _bot_flags(spark, rows, max_per_hour=20, bot_event_types=["view", "click"],
                                   relative_factor=None)
    assert by_user == {"bot": 30} and rules == {"bot": "browsing_rate"}


def test_rating_many_films_in_one_sitting_is_human_but_a_rating_flood_is_not(spark):
    # 25 people rate 40 films each within an hour; a spammer rates 600 in one hour
    rows = [r for u in range(25) for r in _burst(f"fan{u}_", "rate", 40, 60)] + _burst("spam", "rate", 600, 5)
    # ratings are not a browsing type: the fixed rule takes nobody, whatever their rate
    by_user, _, _ = _bot_flags(spark, rows, max_per_hour=30, bot_event_types=["view", "click"], relative_factor=None)
    assert by_user == {}
    # relative to the data: 600 > 10 x the median busiest hour (40); 40 is not
    by_user, rules, info = _bot_flags(spark, rows, max_per_hour=30, bot_event_types=["view", "click"],
                                      relative_factor=10.0)
    assert by_user == {"spam": 600} and rules == {"spam": "relative_rate"}
    assert info["median_busiest_hour"] == 40 and info["relative_limit"] == 400.0
    # and never below the fixed limit: a data set of quiet users does not turn a busy one into a bot
    quiet = [r for u in range(9) for r in _burst(f"q{u}_", "rate", 2, 60)] + _burst("busy", "rate", 25, 60)
    assert _bot_flags(spark, quiet, max_per_hour=30, bot_event_types=[], relative_factor=10.0)[0] == {}


def _raw_items(spark, rows):
    schema = StructType(RAW_ITEMS.fields + HELPERS)
    return spark.createDataFrame([(*r[:9], "items.jsonl", r[9], None) for r in rows], schema)


def test_each_item_fault_gets_its_reason_and_latest_version_wins(spark):
    t0, t1 = "2026-06-01T00:00:00Z", "2026-06-20T00:00:00Z"
    rows = [
        ("i1", "Shoe", "Run", "B", 10.0, "d", "a| b |", t0, "r1", False),
        ("i1", "Shoe v2", "Run", "B", 8.0, "d", "a", t1, "r2", False),
        ("i2", "   ", "Run", "B", 10.0, "d", "", t0, "r3", False),
        ("i3", "Knife", "Cook", "F", -1.0, "d", "", t0, "r4", False),
        (" ", "Pan", "Cook", "F", 1.0, "d", "", t0, "r5", False),
        ("i5", "Tent", "Camp", "S", 1.0, "d", "", "when?", "r6", False),
        (None, None, None, None, None, None, None, None, "{bad", True),
    ]
    items = classify_items(normalise_items(_raw_items(spark, rows), max_text_length=100))
    reasons = sorted((r["_raw_record"], r[REASON]) for r in items.collect())
    assert reasons == [("r1", None), ("r2", None), ("r3", "missing_title"), ("r4", "negative_price"),
                       ("r5", "missing_item_id"), ("r6", "unparseable_updated_at"), ("{bad", "malformed_record")]
    latest = latest_items(items.where(F.col(REASON).isNull()), dt.datetime(2026, 6, 28))
    assertDataFrameEqual(latest.select("item_id", "title", "price", "tags"),
                         [("i1", "Shoe v2", 8.0, ["a"])], checkRowOrder=False)
    first = normalise_items(_raw_items(spark, rows[:1]), 100).first()
    assert first["tags"] == ["a", "b"]


def test_read_raw_jsonl_keeps_malformed_and_invalid_utf8_lines(spark, tmp_path):
    f = tmp_path / "ev.jsonl"
    f.write_bytes(b'{"event_id":"e1","user_id":"u1","item_id":"i1","event_type":"view","ts":1782813600}\n'
                  b'\n'
                  b'{"event_id":"e2","user_id":\n'
                  b'{"event_id":"e3","user_id":"u\xff\xfe","item_id":"i1","event_type":"view","ts":"x"}\n'
                  b'[1, 2]\n')
    df = read_raw(spark, str(f), "jsonl", RAW_EVENTS, "input.events_path")
    rows = {r["_raw_record"][:17]: r for r in df.collect()}
    assert len(rows) == 4                                               # blank line is no record
    assert rows['{"event_id":"e1",']["ts"] == "1782813600"               # numbers read as strings
    assert rows['{"event_id":"e1",'][MALFORMED] is False
    assert rows['{"event_id":"e2",'][MALFORMED] is True
    assert rows["[1, 2]"][MALFORMED] is True
    assert rows['{"event_id":"e1",'][FILE].endswith("ev.jsonl")


def test_read_raw_csv_bad_number_is_malformed(spark, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text("event_id,user_id,item_id,event_type,ts,rating,review_text\n"
                 "e1,u1,i1,rate,2026-06-30T10:00:00Z,4.0,\"good, really\"\n"
                 "e2,u1,i1,rate,2026-06-30T10:00:00Z,not-a-number,\n")
    df = read_raw(spark, str(f), "csv", RAW_EVENTS, "input.events_path")
    got = {r["event_id"]: (r["review_text"], r[MALFORMED]) for r in df.collect()}
    assert got["e1"] == ("good, really", False)
    assert [v[1] for k, v in got.items() if k != "e1"] == [True]


def test_read_raw_missing_path_names_path_and_key(spark, tmp_path):
    from jobs.common.errors import InputError

    with pytest.raises(InputError, match=r"nope.*input\.events_path"):
        read_raw(spark, str(tmp_path / "nope"), "jsonl", RAW_EVENTS, "input.events_path")


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_VALID = b'{"event_id":"e1","user_id":"u1","item_id":"i1","event_type":"view","ts":"2026-06-30T10:00:00Z"}'


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b and b.strip()),
                min_size=1, max_size=8))
def test_arbitrary_bytes_never_vanish_or_crash(spark, tmp_path_factory, junk):
    # every non-blank line is either a clean candidate or gets a reason; none is lost
    f = tmp_path_factory.mktemp("junk") / "ev.jsonl"
    f.write_bytes(b"\n".join([_VALID, *junk]) + b"\n")
    raw = read_raw(spark, str(f), "jsonl", RAW_EVENTS, "input.events_path")
    items = spark.createDataFrame([("i1",)], "item_id string")
    classified = classify_events(normalise_events(raw, 100), items, WINDOW, TYPES, 1.0, 5.0).collect()
    assert len(classified) == 1 + len(junk)
    good = [r for r in classified if r[REASON] is None]
    assert [r["event_id"] for r in good if r["_raw_record"] == _VALID.decode()] == ["e1"]
