"""Sequence-model throughput: training examples per second, time per epoch as events grow, users
scored per second; on the CPU (TorchDistributor, 2 processes) and on a GPU when there is one.

    .venv/bin/python benchmarks/seqrec.py [--users 2000] [--items 2000] [--epochs 2]

The data is synthetic (each user's next item is a neighbour of the last one most of the time, the
language-model vectors random unit vectors of 384 dims, like all-MiniLM-L6-v2's), written the way
``jobs/train_seqrec.py`` writes it (Parquet shards and a vocabulary), and trained by the same
process function under ``pyspark.ml.torch.distributor.TorchDistributor`` with the default
architecture of ``conf/default.yaml``. Sizes 1x and 4x users (so 1x and 4x events) run side by
side in one process. Scoring runs the serving UDF (``udfs.seqrec.user_vector_frames``) inside
``mapInPandas`` on local Spark, the checkpoint loaded once per Python worker.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.common.config import load_config  # noqa: E402
from jobs.common.session import get_spark  # noqa: E402
from jobs.common.settings import SeqRecSettings  # noqa: E402
from udfs import seqrec as sq  # noqa: E402
from udfs.seqrec_dist import train_process  # noqa: E402


def synthetic(users: int, items: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        n = int(np.clip(rng.lognormal(3.0, 0.6), 5, 200))
        s = [int(rng.integers(1, items + 1))]
        for _ in range(n - 1):
            s.append(int((s[-1] + rng.integers(1, 4)) % items + 1) if rng.random() < 0.7 else int(rng.integers(1, items + 1)))
        out.append(s)
    return out


def write_inputs(spark, folder: str, seqs: list[list[int]], items: int, processes: int, max_len: int) -> tuple[str, str]:
    import pandas as pd

    rng = np.random.default_rng(0)
    vec = rng.normal(size=(items, 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    # each user's events an hour apart, users starting a minute apart; an item's first event is
    # when the training first counts it among a target's negatives (seqrec.mask_unavailable)
    times = [[60 * u + 3600 * j for j in range(len(s))] for u, s in enumerate(seqs)]
    first = np.full(items + 1, np.iinfo(np.int64).max, dtype=np.int64)
    for s, t in zip(seqs, times):
        np.minimum.at(first, np.asarray(s), np.asarray(t, dtype=np.int64))
    vocab = pd.DataFrame({"item_id": [f"i{k:06d}" for k in range(items)], "idx": np.arange(1, items + 1, dtype=np.int32),
                          "embedding": vec.tolist(),
                          "first_seen": pd.Series(first[1:]).where(first[1:] < np.iinfo(np.int64).max).astype("Int64")})
    vpath, epath = f"{folder}/vocabulary", f"{folder}/examples"
    (spark.createDataFrame(vocab, "item_id string, idx int, embedding array<float>, first_seen long")
     .coalesce(1).write.parquet(vpath))
    keep = -(max_len + 2)
    ex = pd.DataFrame({"user_id": [f"u{u:07d}" for u in range(len(seqs))], "items": [s[keep:] for s in seqs],
                       "times": [t[keep:] for t in times], "first_new": np.zeros(len(seqs), dtype=np.int32),
                       "_shard": np.arange(len(seqs), dtype=np.int32) % processes})
    (spark.createDataFrame(ex, "user_id string, items array<int>, times array<bigint>, first_new int, _shard int")
     .write.partitionBy("_shard").parquet(epath))
    return epath, vpath


def run_training(spark, folder, seqs, items, processes, gpu, epochs) -> dict:
    from pyspark.ml.torch.distributor import TorchDistributor

    s = SeqRecSettings.from_config(load_config())
    epath, vpath = write_inputs(spark, folder, seqs, items, processes, s.max_len)
    train = {**s.training(False), "epochs": epochs, "patience": epochs + 1}
    spec = {"examples": epath, "vocabulary": vpath, "out": f"{folder}/model", "config": s.architecture,
            "train": train, "warm_from": None, "warm": False, "id_hash_above": s.id_hash_above,
            "id_hash_buckets": s.id_hash_buckets, "use_gpu": gpu}
    t0 = time.monotonic()
    out = TorchDistributor(num_processes=processes, local_mode=True, use_gpu=gpu).run(train_process, spec)
    out["wall"] = time.monotonic() - t0
    return out


def run_scoring(spark, folder, seqs, device: str) -> float:
    import pandas as pd

    df = spark.createDataFrame(pd.DataFrame({"user_id": [f"u{u:07d}" for u in range(len(seqs))], "items": seqs}),
                               "user_id string, items array<int>").repartition(2).cache()
    df.count()
    model = f"{folder}/model"

    def body(frames, _m=model, _d=device):
        return sq.user_vector_frames(frames, _m, _d, 1024, "bench")

    scored = df.mapInPandas(body, "user_id string, embedding array<float>, anchor int")
    scored.write.format("noop").mode("overwrite").save()         # warm: workers load the model
    t0 = time.monotonic()
    scored.write.format("noop").mode("overwrite").save()
    seconds = time.monotonic() - t0
    df.unpersist()
    return len(seqs) / seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    spark = get_spark(load_config(values={"spark": {"master": "local[2]", "conf": {"spark.ui.enabled": "false"}}}))
    spark.sparkContext.setLogLevel("ERROR")
    runs = [("cpu", args.processes, False)] + ([("gpu", 1, True)] if torch.cuda.is_available() else [])
    rows = []
    for device, processes, gpu in runs:
        for scale in (1, 4):
            seqs = synthetic(args.users * scale, args.items, seed=scale)
            events = sum(len(s) for s in seqs)
            folder = tempfile.mkdtemp(prefix="recjobs-seqrec-bench-")
            try:
                out = run_training(spark, folder, seqs, args.items, processes, gpu, args.epochs)
                per_epoch = out["train_seconds"] / out["epochs"]
                positions = out["positions"]
                users_s = run_scoring(spark, folder, seqs, "cuda" if gpu else "cpu")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            rows.append((device, processes, scale, len(seqs), events, positions, per_epoch,
                         positions / per_epoch, users_s, out["wall"]))
            print(f"{device} x{scale}: {len(seqs)} users, {events} events, {positions} training positions, "
                  f"{per_epoch:.2f} s/epoch, {positions / per_epoch:,.0f} examples/s, {users_s:,.0f} users scored/s",
                  flush=True)
    print()
    print("| device | processes | size | users | events | positions | s / epoch | examples / s | users scored / s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for d, p, sc, u, e, pos, ep, exs, us, _ in rows:
        print(f"| {d} | {p} | {sc}x | {u:,} | {e:,} | {pos:,} | {ep:.2f} | {exs:,.0f} | {us:,.0f} |")
    for d in {r[0] for r in rows}:
        one, four = [r for r in rows if r[0] == d and r[2] == 1][0], [r for r in rows if r[0] == d and r[2] == 4][0]
        print(f"{d}: epoch time 4x / 1x = {four[6] / one[6]:.2f} for {four[4] / one[4]:.2f}x the events")
    if not torch.cuda.is_available():
        print("no GPU on this machine: the GPU rows are missing (benchmarks/gpu_check.sh runs them on one)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
