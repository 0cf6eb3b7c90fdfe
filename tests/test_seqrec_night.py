"""The sequence model trained by its stage on the ratings shape's planted series, under leave-last-out."""
from __future__ import annotations

import json

import numpy as np
import pytest
from deltalake import DeltaTable

from jobs.common import delta_io
from jobs.common.settings import EvalSettings
from jobs.evaluation import split
from jobs.evaluation.holdout import build_features, history_days, holdout_cfg
from jobs.sample_data import SampleSpec
from jobs.stages import stage_function

# the product's width and depth (conf/default.yaml) rather than the test-scale model of
# tests/conftest.py, over the newest 20 items (a pending part is rarely older than that)
SERIES_SEQREC = {"dim": 64, "layers": 2, "max_len": 20}


@pytest.fixture(scope="module")
def series(spark, make_lake, tiny_model_dir):
    """A ratings sample cleaned and encoded, split leave-last-out, and the sequence model trained by
    its stage on the training events alone (in a hold-out lake, as the evaluation does)."""
    spec = SampleSpec(shape="ratings", users=200, items=150, days=150, seed=8)
    lake = make_lake("series", spec, {"encoder": {"model": tiny_model_dir}, "seqrec": SERIES_SEQREC})
    cfg, ds = lake.cfg, spec.end_date
    for stage in ("clean", "encode_items"):
        stage_function(stage)(spark, cfg, ds, "series")
    events = delta_io.read_table(spark, cfg, "events_clean")
    train, _, fds = split(events, "leave_last_out", ds, EvalSettings.from_config(cfg).relevant_types, 0.2, 1)
    hcfg = holdout_cfg(cfg, "_holdout/series", {}, history_days(train, fds))
    build_features(spark, cfg, hcfg, train, fds, "series", ("build_sequences", "train_seqrec"))
    return lake


def test_the_sequence_model_follows_the_planted_series(series):
    """Of the users whose held-out rating is the next part of a series they are in (a planted
    successor step), the model ranks that part in its top 10 (rated items excluded) for at least
    0.8 of the share an oracle that knows the series does."""
    successor = series.truth["successor"]
    lake = series.root / "lake"
    split_lake = lake / "_holdout" / "series"
    order = ["user_id", "event_ts", "event_id"]
    every = DeltaTable(str(lake / "events_clean")).to_pandas().sort_values(order)
    train = DeltaTable(str(split_lake / "events_clean")).to_pandas().sort_values(order)
    users = DeltaTable(str(split_lake / "sequence_user_vectors")).to_pandas()
    items = DeltaTable(str(split_lake / "sequence_item_vectors")).to_pandas()
    ids, matrix = items.item_id.to_numpy(), np.stack(items.embedding.to_numpy())
    where = {item: k for k, item in enumerate(ids)}
    history = train.groupby("user_id").item_id.apply(list).to_dict()
    full = every.groupby("user_id").item_id.apply(list).to_dict()
    steps = hits = oracle = 0
    for user, vector in zip(users.user_id, users.embedding):
        seen = history.get(user, [])
        if len(full[user]) <= len(seen):
            continue
        held_out = full[user][len(seen)]
        rated = set(seen)
        pending = list(dict.fromkeys(successor[i] for i in reversed(seen) if i in successor
                                     and successor[i] not in rated))
        if held_out not in pending:
            continue
        steps += 1
        oracle += held_out in pending[:10]
        scores = matrix @ np.asarray(vector)
        scores[[where[i] for i in rated if i in where]] = -np.inf
        hits += held_out in set(ids[np.argsort(-scores)[:10]])
    assert steps >= 20, steps
    print(f"planted successor steps {steps}: model {hits}, oracle {oracle}")
    assert hits >= 0.8 * oracle, (hits, oracle, steps)


def test_the_stage_records_the_model_it_trained(spark, series):
    model = DeltaTable(str(series.root / "lake" / "_holdout" / "series" / "sequence_models")).to_pandas()
    assert len(model) == 1
    row = model.iloc[0]
    assert row["mode"] == "full" and row["processes"] == 2 and row["device"] == "cpu"
    assert 1 <= row["best_epoch"] <= row["epochs"] and row["validation_users"] > 100
    assert row["parameters"] > 50_000 and row["training_positions"] > 1000
    assert json.loads(row["details"])["training"]["mask_unavailable"] is True


def test_the_vocabulary_holds_each_items_first_event_in_the_training_window(spark, series):
    """What the training masks unavailable items by: each item's first event among the hold-out's
    training events (epoch seconds), null for an item without one."""
    import pandas as pd
    import pyarrow.parquet as pq

    hold = series.root / "lake" / "_holdout" / "series"
    path = DeltaTable(str(hold / "sequence_models")).to_pandas().iloc[0]["path"]
    vocab = pq.read_table(str(hold / path / "vocabulary")).to_pandas().set_index("item_id")
    events = DeltaTable(str(hold / "events_clean")).to_pandas()
    first = events.groupby("item_id")["event_ts"].min()
    seen = vocab["first_seen"].dropna()
    assert len(seen) == len(first.index.intersection(vocab.index)) > 100
    expected = (pd.to_datetime(first.loc[seen.index], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    assert (seen.astype("int64") == expected).all()
    assert vocab.loc[~vocab.index.isin(first.index), "first_seen"].isna().all()
