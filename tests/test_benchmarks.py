"""The figures the benchmarks compute from a lake (benchmarks/rare_items.py, benchmarks/cold_items.py)."""
from __future__ import annotations

import datetime as dt

from jobs.common import delta_io
from jobs.common.config import with_values

DS = dt.date(2026, 6, 30)


def _vectors(spark, cfg, name, rows):
    key = "user_id" if name == "sequence_user_vectors" else "item_id"
    extra = ", anchor_item string, anchor_type string" if key == "user_id" else ""
    frame = spark.createDataFrame(
        [(DS, k, v, len(v), *((None, None) if key == "user_id" else ()), DS, "r") for k, v in rows],
        f"ds date, {key} string, embedding array<float>, dim int{extra}, model_ds date, run_id string")
    delta_io.overwrite(frame, cfg, name)


def test_a_held_out_item_is_ranked_among_the_catalogue_less_the_users_exclusions(spark, lake_cfg):
    from benchmarks.rare_items import PROTOCOL, ranks
    from jobs.evaluation.holdout import holdout_cfg, holdout_name

    cfg = with_values(lake_cfg, {"rank.exclude_types": ["purchase"]})
    hcfg = holdout_cfg(cfg, holdout_name(PROTOCOL))
    # scores for u1 (vector [1, 0]): a 0.9, c 0.7, b 0.5, d 0.1; u2 ([0, 1]): d 0.9 first
    _vectors(spark, hcfg, "sequence_item_vectors",
             [("a", [0.9, 0.0]), ("b", [0.5, 0.1]), ("c", [0.7, 0.0]), ("d", [0.1, 0.9])])
    _vectors(spark, hcfg, "sequence_user_vectors", [("u1", [1.0, 0.0]), ("u2", [0.0, 1.0])])
    # u1 bought c in training: it is left out of u1's ranking (a view would not be)
    schema = ("event_id string, user_id string, item_id string, event_type string, event_ts timestamp, rating double, "
              "review_text string, text_truncated boolean, source_file string, run_id string, event_date date")

    def event(eid, user, item, kind, ts):
        return (eid, user, item, kind, ts, None, None, False, "f", "r", ts.date())

    training = [event("e1", "u1", "c", "purchase", dt.datetime(2026, 6, 29, 10)),
                event("e2", "u2", "a", "view", dt.datetime(2026, 6, 29, 10))]
    delta_io.overwrite(spark.createDataFrame(training, schema), hcfg, "events_clean")
    # the whole lake: b first bought at 8:00 on the 30th, d first viewed at 9:00, after u2 chose b
    held_at = {"u1": dt.datetime(2026, 6, 30, 8), "u2": dt.datetime(2026, 6, 30, 8, 30), "u3": dt.datetime(2026, 6, 30, 9)}
    later = [event("e3", "u1", "b", "purchase", held_at["u1"]), event("e4", "u2", "b", "view", held_at["u2"]),
             event("e5", "u5", "d", "view", dt.datetime(2026, 6, 30, 9))]
    delta_io.overwrite(spark.createDataFrame(training + later, schema), cfg, "events_clean")
    held = spark.createDataFrame([("u1", "b", 0, held_at["u1"]), ("u2", "b", 0, held_at["u2"]), ("u3", "a", 1, held_at["u3"])],
                                 "user_id string, item_id string, train_events long, held_ts timestamp")
    got = {(r["user_id"], r["item_id"]): (r["rank"], r["rank_out"]) for r in ranks(spark, cfg, hcfg, held, DS).collect()}
    # u1: only a scores above b once c is excluded; u2: d scores above b but was not out when u2
    # chose b; u3 has no vector
    assert got == {("u1", "b"): (2, 2), ("u2", "b"): (2, 1), ("u3", "a"): (None, None)}


def test_cold_items_keep_only_their_last_or_first_events_and_the_rest_is_untouched(spark):
    import pytest

    from benchmarks.cold_items import thin
    from benchmarks.rare_items import sign_test

    t0 = dt.datetime(2026, 6, 1)
    # 40 held-out items with 1 to 6 training events each (item i: events at hours i, i+1, ...), and
    # 10 items never held out; event ids run against time so that ordering by id would differ
    train = [(f"e{999 - n}", f"u{n}", f"i{item}", t0 + dt.timedelta(hours=item + k))
             for n, (item, k) in enumerate((item, k) for item in range(50) for k in range(1 + item % 6))]
    frame = spark.createDataFrame(train, "event_id string, user_id string, item_id string, event_ts timestamp")
    held = spark.createDataFrame([(f"h{i}", f"i{i}") for i in range(40)], "user_id string, item_id string")
    for which in ("last", "first"):
        kept, cold = thin(frame, held, 1.0, 5, seed=3, which=which)
        keep = {r["item_id"]: r["keep"] for r in cold.collect()}
        assert set(keep) == {f"i{i}" for i in range(40)} and set(keep.values()) == {0, 1, 2, 3, 4}
        got = {}
        for r in kept.collect():
            got.setdefault(r["item_id"], []).append(r["event_ts"])
        for item in range(50):
            times = [t0 + dt.timedelta(hours=item + k) for k in range(1 + item % 6)]
            n = keep.get(f"i{item}")
            want = times if n is None else times[:n] if which == "first" else times[max(0, len(times) - n):]
            assert sorted(got.get(f"i{item}", [])) == want, (which, item)
        assert kept.count() == sum(len(v) for v in got.values())
    # a share picks a seeded subset of the held-out items; another seed, another one
    some = {r["item_id"] for r in thin(frame, held, 0.5, 5, seed=3)[1].collect()}
    other = {r["item_id"] for r in thin(frame, held, 0.5, 5, seed=4)[1].collect()}
    assert 10 <= len(some) <= 30 and some != other and some < set(keep)
    assert some == {r["item_id"] for r in thin(frame.repartition(3), held, 0.5, 5, seed=3)[1].collect()}
    with pytest.raises(ValueError, match="--share"):
        thin(frame, held, 0.0, 5, seed=3)
    with pytest.raises(ValueError, match="--keep"):
        thin(frame, held, 0.5, 5, seed=3, which="middle")
    # the sign test: 9 wins of 10 is p = 22/1024, an even split p = 1, no decided pair p = 1
    assert sign_test(9, 1) == pytest.approx(22 / 1024) and sign_test(1, 9) == pytest.approx(22 / 1024)
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
