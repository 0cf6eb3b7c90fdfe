"""build_sequences and the user-vector arithmetic on tiny literal examples."""
import datetime as dt
import math

import numpy as np
import pytest

from jobs.build_sequences import build_user_sequences, sequence_events
from jobs.common.settings import SequenceSettings
from jobs.common.config import load_config
from jobs.common.errors import ConfigError
from jobs.common.pooling import weighted_mean
from jobs.encode_users import mix_embeddings

END = dt.datetime(2026, 7, 1)
TW = {"view": 1.0, "click": 2.0, "purchase": 5.0}
HL = {"view": 2.0, "click": 4.0, "purchase": 10.0}


def _events(spark, rows):
    return spark.createDataFrame(
        [(f"e{i}", u, it, et, END - dt.timedelta(hours=h)) for i, (u, it, et, h) in enumerate(rows)],
        "event_id string, user_id string, item_id string, event_type string, event_ts timestamp")


def _items(spark):
    return spark.createDataFrame([("i1", "Trail Shoe", "Running"), ("i2", "Chef Knife", None)],
                                 "item_id string, title string, category string")


def test_decay_weights_equal_the_formula(spark):
    rows = [("u1", "i1", "view", 12), ("u1", "i2", "click", 36), ("u1", "i1", "purchase", 240)]
    got = sequence_events(_events(spark, rows), _items(spark), END, 30, 10, 30, TW, HL).collect()
    by_type = {r["event_type"]: r["weight"] for r in got}
    for _, _, etype, hours in rows:
        expected = TW[etype] * math.exp(-math.log(2) * (hours / 24.0) / HL[etype])
        assert by_type[etype] == pytest.approx(expected, rel=1e-12)


def test_last_l_newest_first_sessions_and_text(spark):
    # five events: two sessions (a 5-hour gap), one outside the lookback
    rows = [("u1", "i1", "view", 1.0), ("u1", "i2", "click", 1.2), ("u1", "i1", "purchase", 6.0),
            ("u1", "i2", "view", 6.3), ("u1", "i1", "view", 24 * 40)]
    seq = sequence_events(_events(spark, rows), _items(spark), END, 30, 3, 30, TW, HL)
    out = build_user_sequences(seq, {"view": "viewed", "click": "clicked", "purchase": "purchased"}, 500).first()
    assert out["n_events"] == 3                                        # max_len = 3
    assert [e["event_type"] for e in out["events"]] == ["view", "click", "purchase"]   # newest first
    assert out["n_sessions"] == 2
    assert out["events"][0]["session_id"] == out["events"][1]["session_id"] != out["events"][2]["session_id"]
    assert out["seq_text"] == ("viewed: Trail Shoe (Running); clicked: Chef Knife; "
                               "purchased: Trail Shoe (Running)")
    short = build_user_sequences(seq, {"view": "viewed", "click": "clicked", "purchase": "purchased"}, 50).first()
    assert short["seq_text"] == "viewed: Trail Shoe (Running); clicked: Chef Knife"   # cut at an entry


def test_pooled_vector_is_the_weighted_mean(spark):
    weighted = spark.createDataFrame([("u1", "a", 3.0), ("u1", "b", 1.0), ("u2", "b", 2.0), ("u2", "zz", 5.0)],
                                     "user_id string, item_id string, weight double")
    vectors = spark.createDataFrame([("a", [1.0, 0.0, 2.0]), ("b", [0.0, 4.0, -2.0])],
                                    "item_id string, embedding array<float>")
    got = {r["user_id"]: np.array(r["pooled"]) for r in weighted_mean(weighted, vectors, "embedding", "pooled").collect()}
    np.testing.assert_allclose(got["u1"], (3 * np.array([1, 0, 2]) + 1 * np.array([0, 4, -2])) / 4, rtol=1e-6)
    np.testing.assert_allclose(got["u2"], [0.0, 4.0, -2.0], rtol=1e-6)   # the unknown item has no vector


def test_mix_is_unit_length_and_falls_back_to_sequence(spark):
    df = spark.createDataFrame([("u1", [3.0, 0.0], [0.0, 2.0]), ("u2", [0.0, 5.0], None)],
                               "user_id string, seq_embedding array<float>, pooled_embedding array<float>")
    got = {r["user_id"]: r for r in mix_embeddings(df, 0.75, 0.25).collect()}
    expected = np.array([0.75, 0.25]) / np.linalg.norm([0.75, 0.25])
    np.testing.assert_allclose(got["u1"]["embedding"], expected, rtol=1e-6)
    np.testing.assert_allclose(got["u2"]["embedding"], [0.0, 1.0], rtol=1e-6)
    assert got["u2"]["pooled_embedding"] is None


def test_every_event_type_needs_weights():
    cfg = load_config()
    assert SequenceSettings.from_config(cfg).type_weights == cfg["sequences"]["type_weights"]
    with pytest.raises(ConfigError, match="sequences.type_weights.*share"):
        SequenceSettings.from_config(load_config(values={"clean": {"event_types": [*cfg["clean"]["event_types"],
                                                                                   "share"]}}))
