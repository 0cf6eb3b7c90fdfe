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
    events = spark.createDataFrame(
        [("e1", "u1", "c", "purchase", dt.datetime(2026, 6, 29, 10), None, None, False, "f", "r", dt.date(2026, 6, 29)),
         ("e2", "u2", "a", "view", dt.datetime(2026, 6, 29, 10), None, None, False, "f", "r", dt.date(2026, 6, 29))],
        "event_id string, user_id string, item_id string, event_type string, event_ts timestamp, rating double, "
        "review_text string, text_truncated boolean, source_file string, run_id string, event_date date")
    delta_io.overwrite(events, hcfg, "events_clean")
    held = spark.createDataFrame([("u1", "b", 0), ("u2", "d", 3), ("u3", "a", 1)],
                                 "user_id string, item_id string, train_events long")
    got = {(r["user_id"], r["item_id"]): r["rank"] for r in ranks(spark, cfg, "", held, DS).collect()}
    # u1: only a scores above b once c is excluded; u2: d is first; u3 has no vector
    assert got == {("u1", "b"): 2, ("u2", "d"): 1, ("u3", "a"): None}
