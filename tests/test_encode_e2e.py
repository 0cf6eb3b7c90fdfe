"""build_sequences -> encode_items -> encode_users on generated data, with a tiny model."""

import numpy as np
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.config import load_config
from jobs.common.runner import run_stage
from jobs.sample_data import SampleSpec

SPEC = SampleSpec(users=60, items=48, days=4, seed=21)


@pytest.fixture(scope="module")
def encoded_lake(spark, make_lake, tiny_model_dir):
    cfg = make_lake("enc", SPEC, {"encoder": {"model": tiny_model_dir, "max_length": 64}}).cfg
    results = {stage: run_stage(spark, cfg, stage, SPEC.end_date, "run-1")
               for stage in ("clean", "build_sequences", "encode_items", "encode_users")}
    return cfg, results


def test_every_item_and_active_user_gets_a_unit_vector(spark, encoded_lake):
    cfg, results = encoded_lake
    items = delta_io.read_table(spark, cfg, "items_clean").count()
    emb = delta_io.read_table(spark, cfg, "item_embeddings")
    assert emb.count() == items == results["encode_items"]["encoded"]
    row = emb.first()
    assert row["dim"] == 32 and len(row["embedding"]) == 32 and row["model_revision"]
    seqs = delta_io.read_table(spark, cfg, "user_sequences").where(F.col("ds") == SPEC.end_date)
    users = delta_io.read_table(spark, cfg, "user_embeddings").where(F.col("ds") == SPEC.end_date)
    assert users.count() == seqs.count() > 0
    assert seqs.where("n_events > 50 OR n_events < 1").count() == 0
    for r in users.limit(20).collect():
        for col in ("embedding", "seq_embedding", "pooled_embedding"):
            assert abs(np.linalg.norm(r[col]) - 1.0) < 1e-4


def test_incremental_encoding_touches_exactly_the_changed_items(spark, encoded_lake):
    cfg, _ = encoded_lake
    changed = ["i00003", "i00010"]
    DeltaTable.forPath(spark, delta_io.table_path(cfg, "items_clean")).update(
        F.col("item_id").isin(changed), {"title": F.concat(F.col("title"), F.lit(" deluxe"))})
    before = {r["item_id"]: r["content_hash"] for r in
              delta_io.read_table(spark, cfg, "item_embeddings").select("item_id", "content_hash").collect()}
    summary = run_stage(spark, cfg, "encode_items", SPEC.end_date, "run-2")
    assert summary["encoded"] == len(changed)
    after = delta_io.read_table(spark, cfg, "item_embeddings")
    assert sorted(r["item_id"] for r in after.where("run_id = 'run-2'").collect()) == changed
    assert after.count() == len(before)
    assert all(before[r["item_id"]] != r["content_hash"] for r in after.where("run_id = 'run-2'").collect())
    # nothing changed since: nothing to encode
    assert run_stage(spark, cfg, "encode_items", SPEC.end_date, "run-3")["encoded"] == 0


def test_full_refresh_reencodes_everything(spark, encoded_lake):
    cfg, _ = encoded_lake
    full = load_config(values={**cfg, "encoder": {**cfg["encoder"], "full_refresh": True}})
    summary = run_stage(spark, full, "encode_items", SPEC.end_date, "run-full")
    table = delta_io.read_table(spark, cfg, "item_embeddings")
    assert summary["encoded"] == table.count() == table.where("run_id = 'run-full'").count()


def test_relative_lake_root_is_resolved(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(values={"lake": {"root": "rel/lake"}})
    assert delta_io.read_table(spark, cfg, "runs").count() == 0
    assert (tmp_path / "rel" / "lake" / "runs" / "_delta_log").is_dir()
