"""The figures the benchmarks compute from a lake (benchmarks/rare_items.py)."""
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
    got = {(r["user_id"], r["item_id"]): (r["rank"], r["rank_out"]) for r in ranks(spark, cfg, "", held, DS).collect()}
    # u1: only a scores above b once c is excluded; u2: d scores above b but was not out when u2
    # chose b; u3 has no vector
    assert got == {("u1", "b"): (2, 2), ("u2", "b"): (2, 1), ("u3", "a"): (None, None)}
