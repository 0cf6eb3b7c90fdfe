"""encode_items: language-model vectors of item text, incremental by content hash.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/encode_items.py --date 2026-06-30 --conf conf/cluster.yaml [--set encoder.full_refresh=true]

Item text comes from ``encoder.item_template``; its hash together with the model id and
revision decides whether an item needs encoding. Only new or changed items are encoded and
merged into ``item_embeddings``; ``--full`` (``encoder.full_refresh``) re-encodes everything.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.encoding import ModelRef, encode_column, model_columns, model_ref
from jobs.common.runlog import StageRecord
from jobs.common.settings import EncodeSettings
from jobs.common.text import item_text
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "encode_items"
def content_hash(text: Column, ref: ModelRef) -> Column:
    """sha256 of the text, the model id and the model revision."""
    return F.sha2(F.concat_ws("\u0001", text, F.lit(ref.model_id), F.lit(ref.revision)), 256)


def items_to_encode(items: DataFrame, existing: DataFrame, full: bool) -> DataFrame:
    """Items whose (item_id, content_hash) is not in ``existing`` (all of them when ``full``)."""
    if full:
        return items
    return items.join(existing.select(c.ITEM_ID, "content_hash"), [c.ITEM_ID, "content_hash"], "left_anti")


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Encode new or changed items (all with ``encoder.full_refresh``) into ``item_embeddings``."""
    rec = rec or StageRecord()
    ref = model_ref(cfg)
    s = EncodeSettings.from_config(cfg)
    full = s.full_refresh
    text = item_text(s.item_template)
    items = (delta_io.read_table(spark, cfg, "items_clean")
             .select(c.ITEM_ID, text.alias("text"))
             .withColumn("content_hash", content_hash(F.col("text"), ref)))
    existing = delta_io.read_table(spark, cfg, "item_embeddings")
    todo = items_to_encode(items, existing, full).persist(StorageLevel.MEMORY_AND_DISK)
    n_todo = todo.count()
    n_items = items.count()
    # persisted so the model runs once per item: MERGE and the counts read the stored vectors
    encoded = (encode_column(todo, "text", "embedding", ref, n_todo, s.arrow_batch_rows)
               .select(c.ITEM_ID, "text", "content_hash", "embedding", *model_columns(ref),
                       F.lit(ds).alias("encoded_ds"), F.lit(run_id).alias(c.RUN_ID))
               .persist(StorageLevel.MEMORY_AND_DISK))
    encoded.count()
    if full:
        delta_io.replace_where(encoded, cfg, "item_embeddings", "true")
    elif n_todo:
        delta_io.merge_latest(encoded, cfg, "item_embeddings", c.ITEM_ID, "encoded_ds")
    encoded.unpersist()
    todo.unpersist()
    summary = {"items": n_items, "encoded": n_todo, "skipped_unchanged": n_items - n_todo if not full else 0,
               "full_refresh": full, "model_id": ref.model_id, "model_revision": ref.revision, "dim": ref.dim,
               "path": delta_io.table_path(cfg, "item_embeddings")}
    line = (f"items encoded: {n_todo} of {n_items} with {ref.model_id} (dim {ref.dim}, revision {ref.revision})")
    return rec.finish(STAGE, summary, rows_in=n_items, rows_out=n_todo, line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
