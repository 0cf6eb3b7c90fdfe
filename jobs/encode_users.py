"""encode_users: per active user, the language-model encoding of the behaviour sequence, the
decay-weighted mean of the item vectors in it, and their mix.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/encode_users.py --date 2026-06-30 --conf conf/cluster.yaml

Reads the ds partition of ``user_sequences`` and ``item_embeddings``; writes the ds partition of
``user_embeddings``. The mix is ``normalise(w_seq * seq + w_pool * pooled)`` with the weights from
``users`` renormalised to sum to 1; a user whose items have no vectors keeps the sequence vector.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.encoding import encode_column, model_columns, model_ref
from jobs.common.pooling import sequence_weights, weighted_mean
from jobs.common.runlog import StageRecord
from jobs.common.settings import EncodeSettings, UserSettings
from schemas import columns as c
from udfs.vector_ops import mix_udf

log = logging.getLogger(__name__)

STAGE = "encode_users"


def mix_embeddings(df: DataFrame, w_seq: float, w_pool: float) -> DataFrame:
    """``embedding`` = unit(w_seq * unit(seq) + w_pool * unit(pooled)); seq alone when pooled is NULL.

    ``seq_embedding`` and ``pooled_embedding`` come back unit length too.
    """
    mixed = mix_udf(w_seq, w_pool)(F.col("seq_embedding"), F.col("pooled_embedding"))
    return df.withColumn("_mix", mixed).select(
        *[col for col in df.columns if col not in ("seq_embedding", "pooled_embedding")],
        "_mix.embedding", "_mix.seq_embedding", "_mix.pooled_embedding")


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``user_embeddings``."""
    rec = rec or StageRecord()
    ref = model_ref(cfg)
    w_seq, w_pool = UserSettings.from_config(cfg).mix
    batch_rows = EncodeSettings.from_config(cfg).arrow_batch_rows
    seqs = delta_io.read_table(spark, cfg, "user_sequences").where(F.col(c.DS) == F.lit(ds))
    n_users = seqs.count()
    item_vectors = delta_io.read_table(spark, cfg, "item_embeddings").where(F.col("model_id") == ref.model_id)
    pooled = weighted_mean(sequence_weights(seqs), item_vectors, "embedding", "pooled")
    text_vectors = encode_column(seqs.select(c.USER_ID, "seq_text", "n_events"), "seq_text", "seq_embedding",
                                 ref, n_users, batch_rows)
    users = (mix_embeddings(text_vectors.join(pooled.withColumnRenamed("pooled", "pooled_embedding"),
                                              c.USER_ID, "left"), w_seq, w_pool)
             .select(F.lit(ds).alias(c.DS), c.USER_ID, "embedding", "seq_embedding", "pooled_embedding",
                     *model_columns(ref), "n_events", F.lit(run_id).alias(c.RUN_ID)))
    delta_io.replace_where(users, cfg, "user_embeddings", f"ds = DATE'{ds.isoformat()}'")
    written = delta_io.read_table(spark, cfg, "user_embeddings").where(F.col(c.DS) == F.lit(ds))
    stats = written.agg(F.count("*").alias("users"),
                        F.sum(F.col("pooled_embedding").isNull().cast("int")).alias("no_pooled")).first()
    summary = {"users": stats["users"], "without_item_vectors": int(stats["no_pooled"] or 0),
               "weights": {"sequence": w_seq, "pooled": w_pool}, "model_id": ref.model_id,
               "path": delta_io.table_path(cfg, "user_embeddings")}
    line = (f"users encoded: {summary['users']} ({summary['without_item_vectors']} without item vectors; "
            f"mix {summary['weights']})")
    return rec.finish(STAGE, summary, rows_in=n_users, rows_out=stats["users"], line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
