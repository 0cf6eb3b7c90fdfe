"""Blocked top-K retrieval against numpy matmul and Spark ALS, measured side by side in one run.

    python benchmarks/topk.py [--users 20000] [--items 10000] [--dim 64] [--k 100] [--cores N]

(1) ``udfs.topk.block_topk`` on U x d users against I x d items: GFLOP/s (2 * U * I * d / seconds)
    next to numpy's GFLOP/s for the same full product ``users @ items.T``; prints the ratio.
(2) The ranker's Spark retrieval (``jobs.rank_topn.retrieve``: broadcast item matrix, blocked
    top-K in mapInPandas) against ``ALSModel.recommendForAllUsers(k)`` for the same U, I and rank
    on local[N]; prints wall times and the ratio. ALS is fitted first (not timed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    m = rng.normal(size=(n, d)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def kernel(users: np.ndarray, items: np.ndarray, k: int, cores: int) -> dict:
    import torch

    from udfs.topk import block_topk

    torch.set_num_threads(cores)
    flops = 2.0 * users.shape[0] * items.shape[0] * users.shape[1]
    block_topk(users[:256], items, k, device="cpu")                 # warm-up
    t0 = time.perf_counter()
    block_topk(users, items, k, block_rows=2048, device="cpu")
    t_topk = time.perf_counter() - t0
    users @ items.T                                                  # warm-up
    t0 = time.perf_counter()
    users @ items.T
    t_np = time.perf_counter() - t0
    return {"topk_gflops": round(flops / t_topk / 1e9, 1), "numpy_gflops": round(flops / t_np / 1e9, 1),
            "ratio": round(t_np / t_topk, 2), "topk_s": round(t_topk, 3), "numpy_s": round(t_np, 3)}


def spark_vs_als(users: np.ndarray, items: np.ndarray, k: int, cores: int, ratings_per_user: int) -> dict:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from jobs.common.config import load_config
    from jobs.common.session import get_spark
    from jobs.rank_topn import retrieve

    spark = get_spark(load_config(values={"spark": {"master": f"local[{cores}]", "conf": {
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.driver.memory": "8g",
        "spark.sql.shuffle.partitions": str(cores * 2), "spark.default.parallelism": str(cores)}}}),
        app_name="bench-topk")
    n_users, n_items, dim = users.shape[0], items.shape[0], users.shape[1]
    rng = np.random.default_rng(5)
    inter = spark.createDataFrame(
        [(int(u), int(i), 1.0) for u in range(n_users) for i in rng.integers(0, n_items, ratings_per_user)],
        "user int, item int, rating float").dropDuplicates(["user", "item"]).cache()
    inter.count()
    als = ALS(rank=dim, maxIter=2, implicitPrefs=True, userCol="user", itemCol="item", ratingCol="rating", seed=1)
    model = als.fit(inter)
    model.userFactors.cache().count()
    model.itemFactors.cache().count()
    t0 = time.perf_counter()
    n_als = model.recommendForAllUsers(k).select(F.size("recommendations").alias("n")).agg(F.sum("n")).first()[0]
    t_als = time.perf_counter() - t0

    u_df = spark.createDataFrame([(f"u{i}", users[i].tolist()) for i in range(n_users)],
                                 "user_id string, embedding array<float>").repartition(cores).cache()
    i_df = spark.createDataFrame([(f"i{i:07d}", items[i].tolist()) for i in range(n_items)],
                                 "item_id string, embedding array<float>").cache()
    u_df.count(), i_df.count()
    retrieve(u_df.limit(cores * 64), i_df, k, 10**9, 2048).count()      # warm-up the Python workers
    t0 = time.perf_counter()
    n_ours = retrieve(u_df, i_df, k, 10**9, 2048).count()
    t_ours = time.perf_counter() - t0
    spark.stop()
    return {"als_s": round(t_als, 2), "ours_s": round(t_ours, 2), "speedup": round(t_als / t_ours, 1),
            "als_rows": int(n_als), "ours_rows": int(n_ours)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--ratings-per-user", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    users, items = _unit(rng, args.users, args.dim), _unit(rng, args.items, args.dim)
    kern = kernel(users, items, args.k, args.cores)
    spark = spark_vs_als(users, items, args.k, args.cores, args.ratings_per_user)
    print(f"blocked top-{args.k}: {args.users} users x {args.items} items x {args.dim} dims on {args.cores} cores")
    print(f"  block_topk      : {kern['topk_gflops']:7.1f} GFLOP/s ({kern['topk_s']} s)")
    print(f"  numpy matmul    : {kern['numpy_gflops']:7.1f} GFLOP/s ({kern['numpy_s']} s)   ratio = {kern['ratio']:.2f}")
    print(f"  Spark retrieval : {spark['ours_s']:7.2f} s for {spark['ours_rows']} rows")
    print(f"  ALS recommendForAllUsers: {spark['als_s']:7.2f} s for {spark['als_rows']} rows"
          f"   ALS / ours = {spark['speedup']:.1f}x")
    print(json.dumps({"args": vars(args), "kernel": kern, "spark": spark}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
