"""train_seqrec: train the sequence model on behaviour, then score every active user with it.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/train_seqrec.py --date 2026-06-30 --conf conf/cluster.yaml

Reads ``events_clean`` (the ``sequences.lookback_days`` days ending with ds), ``items_clean``,
``item_embeddings`` and ``user_sequences`` (who is active on ds). Each user's items, oldest first,
with repeats of the same item in a row collapsed, become the training examples (with their event
times), written as Parquet in one folder per training process
(``<lake>/_models/seqrec/<ds>/examples/_shard=<rank>``), next to the vocabulary (every item with a
language-model vector, ``idx`` 1..n by item id, and its first event in the window: no training
target counts an item among its negatives before it first appeared, ``seqrec.mask_unavailable``).
``pyspark.ml.torch.distributor.TorchDistributor`` trains the model (``udfs/seqrec.py``) in
``seqrec.num_processes`` processes (DDP; the driver's processes in local mode, Spark tasks
otherwise; GPUs when there are). The checkpoint goes to ``<lake>/_models/seqrec/<ds>/`` and its row
to ``sequence_models``. A full training runs when the newest earlier checkpoint is
``seqrec.refit_every_days`` old (or there is none); otherwise the model warm-starts from it and
trains on the targets of the days since. An iterator UDF then loads the checkpoint once per Python
worker and writes the ds partitions of ``sequence_user_vectors`` (every user of ``user_sequences``
with an item of the vocabulary in the window) and ``sequence_item_vectors``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.encoding import model_ref
from jobs.common.events import day_end
from jobs.common.runlog import StageRecord
from jobs.common.settings import SeqRecSettings
from schemas import columns as c
from schemas import tables as t
from udfs import seqrec as sq
from udfs.seqrec_dist import train_process

log = logging.getLogger(__name__)

STAGE = "train_seqrec"
KIND = "seqrec"


def vocabulary(items: DataFrame, item_vectors: DataFrame) -> DataFrame:
    """``(item_id, idx, embedding)``: every catalogue item with a language-model vector, ``idx``
    1..n in item-id order (the catalogue, not the users: one sorted pass)."""
    have = item_vectors.join(items.select(c.ITEM_ID), c.ITEM_ID).select(c.ITEM_ID, "embedding")
    return have.withColumn("idx", F.row_number().over(Window.orderBy(c.ITEM_ID)).cast("int"))


def item_sequences(events: DataFrame, vocab: DataFrame, keep: int, new_after: dt.date | None) -> DataFrame:
    """``(user_id, items, item_ids, types, times, first_new)``: each user's newest ``keep`` items,
    oldest first, as vocabulary indices (items without a vector are left out), repeats of one item
    in a row collapsed to the newest; ``times`` their event times (epoch seconds); ``first_new`` is
    the index of the first item after ``new_after`` (0 when None: every item is new)."""
    order = Window.partitionBy(c.USER_ID).orderBy(c.EVENT_TS, c.EVENT_ID)
    ev = (events.join(vocab.select(c.ITEM_ID, "idx"), c.ITEM_ID)
          .withColumn("_next", F.lead("idx").over(order))
          .where(F.col("_next").isNull() | (F.col("_next") != F.col("idx"))))
    newest_first = Window.partitionBy(c.USER_ID).orderBy(F.col(c.EVENT_TS).desc(), F.col(c.EVENT_ID).desc())
    ev = ev.withColumn("_r", F.row_number().over(newest_first)).where(F.col("_r") <= keep)
    packed = F.struct(F.col(c.EVENT_TS), F.col(c.EVENT_ID), F.col("idx"), F.col(c.ITEM_ID), F.col(c.EVENT_TYPE),
                      F.col(c.EVENT_DATE))
    grouped = ev.groupBy(c.USER_ID).agg(F.array_sort(F.collect_list(packed)).alias("_s"))
    cut = F.lit(new_after) if new_after is not None else None
    first_new = (F.lit(0) if cut is None else
                 F.coalesce(F.array_position(F.transform("_s", lambda e: e[c.EVENT_DATE] > cut), True) - 1,
                            F.size("_s")).cast("int"))
    return grouped.select(c.USER_ID, F.transform("_s", lambda e: e["idx"]).alias("items"),
                          F.transform("_s", lambda e: e[c.ITEM_ID]).alias("item_ids"),
                          F.transform("_s", lambda e: e[c.EVENT_TYPE]).alias("types"),
                          F.transform("_s", lambda e: e[c.EVENT_TS].cast("long")).alias("times"),
                          first_new.alias("first_new"))


def first_seen(events: DataFrame, vocab: DataFrame) -> DataFrame:
    """``(item_id, idx, embedding, first_seen)``: the vocabulary with each item's first event in
    ``events`` (epoch seconds; null for an item without one), the time from which the training
    counts it among the items a user could have chosen (``seqrec.mask_unavailable``)."""
    first = events.groupBy(c.ITEM_ID).agg(F.min(c.EVENT_TS).cast("long").alias("first_seen"))
    return vocab.select(c.ITEM_ID, "idx", "embedding").join(first, c.ITEM_ID, "left")


def newest_model(spark: SparkSession, cfg: Mapping, ds: dt.date):
    """The newest ``sequence_models`` row of a date before ds whose checkpoint is still there, or None."""
    rows = (delta_io.read_table(spark, cfg, "sequence_models").where(F.col(c.DS) < F.lit(ds))
            .orderBy(F.col(c.DS).desc()).limit(3).collect())          # a row a night, bounded
    for row in rows:
        if sq.exists(f"{delta_io.in_lake(cfg, row['path'])}/{sq.MODEL_FILE}"):
            return row
    return None


def use_gpu(spark: SparkSession, s: SeqRecSettings) -> bool:
    """Whether the training processes get GPUs: ``seqrec.use_gpu``, or for ``auto``, whether the
    driver has CUDA (local mode) or the executors are given GPUs (``spark.task.resource.gpu.amount``)."""
    if s.use_gpu != "auto":
        return s.use_gpu == "true"
    if s.local_mode:
        import torch

        return torch.cuda.is_available()
    return spark.conf.get("spark.task.resource.gpu.amount", None) is not None


def train(spark: SparkSession, spec: dict, processes: int, local_mode: bool, gpu: bool) -> dict:
    """Run :func:`udfs.seqrec_dist.train_process` under TorchDistributor."""
    from pyspark.ml.torch.distributor import TorchDistributor

    return TorchDistributor(num_processes=processes, local_mode=local_mode, use_gpu=gpu).run(train_process, spec)


def serve(spark: SparkSession, sequences: DataFrame, vocab: DataFrame, folder: str, device: str,
          batch: int, version: str) -> tuple[DataFrame, DataFrame]:
    """``(user vectors, item vectors)`` of a checkpoint: ``(user_id, embedding, anchor_item,
    anchor_type)`` for ``sequences`` and ``(item_id, embedding)`` for ``vocab``; ``version`` names
    this training (the workers' model cache key)."""
    def users_body(frames, _folder=folder, _device=device, _batch=batch, _version=version):
        return sq.user_vector_frames(frames, _folder, _device, _batch, _version)

    def items_body(frames, _folder=folder, _device=device, _version=version):
        return sq.item_vector_frames(frames, _folder, _device, _version)

    slots = max(1, spark.sparkContext.defaultParallelism)
    scored = (sequences.select(c.USER_ID, "items").repartition(slots)
              .mapInPandas(users_body, "user_id string, embedding array<float>, anchor int"))
    users = (scored.join(sequences.select(c.USER_ID, "item_ids", "types"), c.USER_ID)
             .select(c.USER_ID, "embedding", F.element_at("item_ids", F.col("anchor") + 1).alias("anchor_item"),
                     F.element_at("types", F.col("anchor") + 1).alias("anchor_type")))
    items = vocab.select(c.ITEM_ID, "idx").mapInPandas(items_body, "item_id string, embedding array<float>")
    return users, items


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Train (or warm-start) tonight's model and write the ds partitions of the vector tables."""
    rec = rec or StageRecord()
    s = SeqRecSettings.from_config(cfg)
    on_ds = f"ds = DATE'{ds.isoformat()}'"
    if not s.enabled:
        _clear(spark, cfg, on_ds)
        return rec.finish(STAGE, {"enabled": False}, line="sequence model: off (seqrec.enabled is false)")
    t0 = time.monotonic()
    ref = model_ref(cfg)
    items = delta_io.read_table(spark, cfg, "items_clean")
    item_vectors = delta_io.read_table(spark, cfg, "item_embeddings").where(F.col("model_id") == ref.model_id)
    vocab = vocabulary(items, item_vectors).cache()
    try:
        return _run(spark, cfg, ds, run_id, rec, s, vocab, on_ds, t0)
    finally:
        vocab.unpersist()


def _run(spark, cfg, ds, run_id, rec, s: SeqRecSettings, vocab: DataFrame, on_ds: str, t0: float) -> dict:
    n_items = vocab.count()
    base = newest_model(spark, cfg, ds)
    warm = base is not None and (ds - base[c.DS]).days < s.refit_every_days
    base_ds = base[c.DS] if warm else None
    events = (delta_io.read_table(spark, cfg, "events_clean")
              .where((F.col(c.EVENT_DATE) > F.lit(ds - dt.timedelta(days=s.lookback_days)))
                     & (F.col(c.EVENT_DATE) <= F.lit(ds)) & (F.col(c.EVENT_TS) < F.lit(day_end(ds)))))
    # the newest `history` training targets (max_len of them read at serving), the input before
    # the oldest, and the validation target
    seqs = item_sequences(events, vocab, s.history + 2, base_ds).cache()
    try:
        trainable = seqs.where(F.size("items") >= 2)
        if warm:
            trainable = trainable.where(F.col("first_new") < F.size("items"))
        n_users = trainable.count()
        folder_rel = delta_io.model_location(KIND, ds)
        folder = delta_io.in_lake(cfg, folder_rel)
        if n_users < s.min_users or n_items < 2:
            _clear(spark, cfg, on_ds)
            why = f"{n_users} users with two items or more (seqrec.min_users = {s.min_users}), {n_items} items"
            log.warning("train_seqrec %s: no model tonight: %s", ds, why)
            return rec.finish(STAGE, {"trained": False, "why": why}, rows_in=n_users,
                              line=f"sequence model: none tonight ({why}); the blend goes without it")
        processes = max(1, min(s.num_processes, n_users // s.min_users_per_process))
        examples = f"{folder}/examples"
        (trainable.withColumn("_shard", F.pmod(F.xxhash64(c.USER_ID), F.lit(processes)).cast("int"))
         .select(c.USER_ID, "items", "times", "first_new", "_shard")
         .write.mode("overwrite").partitionBy("_shard").parquet(examples))
        shards = {r["_shard"] for r in spark.read.parquet(examples).select("_shard").distinct().collect()}  # <= processes rows
        if len(shards) < processes:         # a process without examples would stall the others
            processes = 1
            trainable.select(c.USER_ID, "items", "times", "first_new").withColumn("_shard", F.lit(0)) \
                .write.mode("overwrite").partitionBy("_shard").parquet(examples)
        vocab_path = f"{folder}/vocabulary"
        first_seen(events, vocab).coalesce(1).write.mode("overwrite").parquet(vocab_path)
        gpu = use_gpu(spark, s)
        spec = {"examples": examples, "vocabulary": vocab_path, "out": folder, "config": s.architecture,
                "train": s.training(warm), "warm_from": delta_io.in_lake(cfg, base["path"]) if warm else None,
                "warm": warm, "id_hash_above": s.id_hash_above, "id_hash_buckets": s.id_hash_buckets,
                "use_gpu": gpu, "extra": {"ds": ds.isoformat(), "mode": "warm" if warm else "full",
                                          "base_ds": base_ds.isoformat() if warm else None}}
        result = train(spark, spec, processes, s.local_mode, gpu)
        delta_io.delete_path(spark, examples)
        served = seqs.join(delta_io.read_table(spark, cfg, "user_sequences").where(F.col(c.DS) == F.lit(ds))
                           .select(c.USER_ID), c.USER_ID)
        users, item_out = serve(spark, served, vocab, folder, s.device, s.serve_batch, f"{run_id}@{time.time()}")
        common = [F.size("embedding").alias("dim"), F.lit(ds).alias("model_ds"), F.lit(run_id).alias(c.RUN_ID)]
        delta_io.replace_where(users.select(F.lit(ds).alias(c.DS), "*", *common), cfg, "sequence_user_vectors", on_ds)
        delta_io.replace_where(item_out.select(F.lit(ds).alias(c.DS), "*", *common), cfg, "sequence_item_vectors", on_ds)
        seconds = time.monotonic() - t0
        row = {"ds": ds, "path": folder_rel, "mode": "warm" if warm else "full", "base_ds": base_ds,
               "use_text": s.use_text, "id_embeddings": s.id_embeddings, "epochs": int(result["epochs"]),
               "best_epoch": int(result["best_epoch"]), "validation_users": int(result["validation_users"]),
               "validation_ndcg": result["val_ndcg"], "validation_recall": result["val_recall"],
               "training_users": int(n_users), "training_positions": int(result["positions"]),
               "items": int(result["items"]), "parameters": int(result["params"]),
               "processes": int(result["processes"]), "device": result["device"], "seconds": float(seconds),
               "details": json.dumps({"history": result["history"], "train_seconds": result["train_seconds"],
                                      "architecture": s.architecture, "training": s.training(warm)}),
               c.RUN_ID: run_id}
        delta_io.replace_where(spark.createDataFrame([row], t.SEQUENCE_MODELS), cfg, "sequence_models", on_ds)
        n_served = delta_io.read_table(spark, cfg, "sequence_user_vectors").where(F.col(c.DS) == F.lit(ds)).count()
    finally:
        seqs.unpersist()
    ndcg = "n/a" if row["validation_ndcg"] is None else f"{row['validation_ndcg']:.4f}"
    summary = {"trained": True, **{k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in row.items()
                                   if k not in ("details", c.RUN_ID)}, "users_scored": n_served,
               "history": result["history"]}
    line = (f"sequence model: {row['mode']} training, {row['epochs']} epochs (best {row['best_epoch']}), "
            f"validation NDCG@10 {ndcg} on {row['validation_users']} users, {row['parameters']} parameters, "
            f"{row['processes']} process(es) on {row['device']}, {seconds:.1f} s; {n_served} users scored")
    return rec.finish(STAGE, summary, rows_in=n_users, rows_out=n_served, line=line)


def _clear(spark: SparkSession, cfg: Mapping, on_ds: str) -> None:
    """Empty the ds partitions of the vector tables (a re-run without a model leaves no stale vectors)."""
    for name, schema in (("sequence_user_vectors", t.SEQUENCE_USER_VECTORS),
                         ("sequence_item_vectors", t.SEQUENCE_ITEM_VECTORS)):
        delta_io.replace_where(spark.createDataFrame([], schema), cfg, name, on_ds)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
