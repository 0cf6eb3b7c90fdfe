"""The GPU paths in one run, one table (a few minutes on one GPU); ``benchmarks/gpu_check.sh`` runs it.

    .venv/bin/python benchmarks/gpu_check.py [--texts 100000] [--quick]

1. The encoder UDF on local Spark (``udfs.text_encoder.encoder_udf``, all-MiniLM-L6-v2 packaged,
   fp16, batches sorted by token length inside each Arrow batch) on short item-like texts, model
   batch 256 and 1024: texts/s after a warm-up; the encoder called directly (no Spark) next to it.
2. The blocked top-K (``udfs.topk.block_topk``, host copies included) against torch's own matmul
   of the same shapes on the same GPU: TFLOP/s of each and the ratio.
3. One epoch of the sequence model (``udfs.seqrec_dist.train_process`` under TorchDistributor,
   one GPU process) and its scoring UDF: seconds per epoch, examples/s, users scored/s.

Without CUDA it prints that and exits 0.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def short_texts(n: int, seed: int = 0) -> list[str]:
    words = ("trail running shoe lightweight waterproof kitchen knife stainless steel camping tent novel "
             "cotton shirt blue wireless headphones noise cancelling coffee grinder ceramic").split()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 16)))) for _ in range(n)]


def encoder_rows(spark, texts: list[str]) -> list[tuple[str, str]]:
    import torch
    from pyspark.sql import functions as F

    from udfs.text_encoder import EncoderSettings, encoder_udf, get_encoder

    rows = []
    df = spark.createDataFrame([(t,) for t in texts], "text string").repartition(4).cache()
    df.count()
    for batch in (256, 1024):
        udf = encoder_udf(EncoderSettings(batch_size=batch, device="cuda", half_precision=True))
        df.limit(4096).select(F.sum(F.size(udf("text")))).collect()              # warm-up: workers load
        t0 = time.perf_counter()
        df.select(F.sum(F.size(udf("text")))).collect()
        rows.append((f"encoder UDF, local Spark, fp16, batch {batch}", f"{len(texts) / (time.perf_counter() - t0):,.0f} texts/s"))
    for batch in (256, 1024):
        enc = get_encoder(EncoderSettings(batch_size=batch, device="cuda", half_precision=True))
        enc.encode(texts[:4096])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        enc.encode(texts)
        torch.cuda.synchronize()
        rows.append((f"encoder direct (no Spark), fp16, batch {batch}",
                     f"{len(texts) / (time.perf_counter() - t0):,.0f} texts/s"))
    df.unpersist()
    return rows


def topk_rows(users_n: int, items_n: int) -> list[tuple[str, str]]:
    import torch

    from udfs.topk import block_topk

    rng = np.random.default_rng(0)
    users = rng.normal(size=(users_n, 384)).astype(np.float32)
    items = rng.normal(size=(items_n, 384)).astype(np.float32)
    block_topk(users[:4096], items, 100, block_rows=4096, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    block_topk(users, items, 100, block_rows=8192, device="cuda", ordered=False)
    torch.cuda.synchronize()
    topk_s = time.perf_counter() - t0
    u, i = torch.as_tensor(users, device="cuda"), torch.as_tensor(items, device="cuda")
    (u[:8192] @ i.T).max(dim=1)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(0, len(users), 8192):
        (u[s:s + 8192] @ i.T).max(dim=1)
    torch.cuda.synchronize()
    mm_s = time.perf_counter() - t0
    flops = 2.0 * users_n * items_n * 384
    return [(f"top-100, {users_n:,} users x {items_n:,} items (incl. host copies)", f"{flops / topk_s / 1e12:.1f} TFLOP/s"),
            ("torch matmul + max, same shapes (on device)", f"{flops / mm_s / 1e12:.1f} TFLOP/s"),
            ("top-K / matmul", f"{mm_s / topk_s:.2f}x (target at least 0.6x)")]


def seqrec_rows(spark, users: int, items: int) -> list[tuple[str, str]]:
    from benchmarks.seqrec import run_scoring, run_training, synthetic

    seqs = synthetic(users, items, seed=1)
    folder = tempfile.mkdtemp(prefix="recjobs-gpu-check-")
    try:
        out = run_training(spark, folder, seqs, items, 1, True, 1)
        per_epoch = out["train_seconds"] / out["epochs"]
        scored = run_scoring(spark, folder, seqs, "cuda")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [(f"sequence model, {users:,} users x {items:,} items: one epoch, 1 GPU process",
             f"{per_epoch:.2f} s ({out['positions'] / per_epoch:,.0f} examples/s)"),
            ("sequence model scoring UDF", f"{scored:,.0f} users/s")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to measure (no GPU was at hand)")
        return 0
    from jobs.common.config import load_config
    from jobs.common.session import get_spark

    spark = get_spark(load_config(values={"spark": {"master": "local[4]", "conf": {
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "8192", "spark.driver.memory": "8g"}}}),
        app_name="recjobs-gpu-check")
    spark.sparkContext.setLogLevel("ERROR")
    n = 20_000 if args.quick else args.texts
    sections = [("encoder", lambda: encoder_rows(spark, short_texts(n))),
                ("top-K", lambda: topk_rows(20_000 if args.quick else 200_000, 100_000)),
                ("sequence model", lambda: seqrec_rows(spark, 2_000 if args.quick else 8_000, 2_000))]
    rows = []
    for name, run in sections:
        t0 = time.perf_counter()
        try:
            rows += run()
        except Exception as exc:                   # one failing section does not hide the others
            rows.append((f"{name}: FAILED", f"{type(exc).__name__}: {exc}"[:200]))
        print(f"{name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\nGPU: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})\n")
    print("| check | result |\n| --- | --- |")
    for check, result in rows:
        print(f"| {check} | {result} |")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
