"""Blocked top-K retrieval against numpy matmul and Spark ALS, measured side by side in one run.

    python benchmarks/topk.py [--users 20000] [--items 10000] [--dim 384] [--k 100] [--cores N]

``--dim`` defaults to 384, the size of the product's vectors (all-MiniLM-L6-v2); ``--dim 64``
shows the short-vector case, where selecting costs more than the product.

(1) ``udfs.topk.block_topk`` on U x d users against I x d items: GFLOP/s (2 * U * I * d / seconds)
    next to numpy's GFLOP/s for the same scores (the better of the full product ``users @ items.T``
    and the blocked product into a preallocated buffer); prints the ratio. block_topk is timed as
    the ranker runs it (each user's K in no particular order: the ranker re-orders candidates by
    its blended score) and, for reference, with each row sorted best first.
(2) The ranker's Spark retrieval (``jobs.rank_topn.retrieve``: broadcast item matrix, blocked
    top-K in mapInArrow) against ``ALSModel.recommendForAllUsers(k)`` for the same U, I and rank
    on local[N]; prints wall times and the ratio. ALS is fitted first (not timed).

Every timing is the best of several runs after a warm-up run (JVM code for ALS, Python workers
and torch for the retrieval).
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


def _best(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def kernel(users: np.ndarray, items: np.ndarray, k: int, cores: int, block_rows: int) -> dict:
    """block_topk against numpy computing the same U x I scores, both on ``cores`` threads.

    numpy is timed two ways: the plain full product ``users @ items.T`` (one U x I result) and
    the same product block by block into one preallocated buffer (no allocation or page faults:
    the BLAS peak). The ratio is taken against the faster of the two.
    """
    import torch

    from udfs.topk import block_topk

    torch.set_num_threads(cores)
    flops = 2.0 * users.shape[0] * items.shape[0] * users.shape[1]
    t_topk = _best(lambda: block_topk(users, items, k, block_rows=block_rows, device="cpu", ordered=False), 3)
    t_sorted = _best(lambda: block_topk(users, items, k, block_rows=block_rows, device="cpu"), 3)
    t_full = _best(lambda: users @ items.T, 3)
    buf = np.empty((block_rows, items.shape[0]), dtype=np.float32)
    items_t = np.ascontiguousarray(items.T)

    def blocked():
        for s in range(0, users.shape[0], block_rows):
            block = users[s:s + block_rows]
            np.matmul(block, items_t, out=buf[:len(block)])

    t_blocked = _best(blocked, 3)
    t_np = min(t_full, t_blocked)
    gf = lambda t: round(flops / t / 1e9, 1)  # noqa: E731
    return {"topk_gflops": gf(t_topk), "numpy_full_gflops": gf(t_full), "numpy_blocked_gflops": gf(t_blocked),
            "numpy_gflops": gf(t_np), "ratio": round(t_np / t_topk, 2), "topk_s": round(t_topk, 3),
            "numpy_s": round(t_np, 3), "sorted_gflops": gf(t_sorted), "sorted_ratio": round(t_np / t_sorted, 2),
            "sorted_s": round(t_sorted, 3)}


def spark_vs_als(users: np.ndarray, items: np.ndarray, k: int, cores: int, ratings_per_user: int,
                 block_rows: int) -> dict:
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
    n_rows = {}

    def als_all():
        recs = model.recommendForAllUsers(k)
        n_rows["als"] = recs.select(F.size("recommendations").alias("n")).agg(F.sum("n")).first()[0]

    t_als = _best(als_all, 2)

    u_df = spark.createDataFrame([(f"u{i}", users[i].tolist()) for i in range(n_users)],
                                 "user_id string, embedding array<float>").repartition(cores).cache()
    i_df = spark.createDataFrame([(f"i{i:07d}", items[i].tolist()) for i in range(n_items)],
                                 "item_id string, embedding array<float>").cache()
    u_df.count(), i_df.count()

    def ours():
        n_rows["ours"] = retrieve(u_df, i_df, k, 10**9, block_rows).count()

    t_ours = _best(ours, 2)          # the warm-up call starts the Python workers, as ALS's warms the JVM
    spark.stop()
    return {"als_s": round(t_als, 2), "ours_s": round(t_ours, 2), "speedup": round(t_als / t_ours, 1),
            "als_rows": int(n_rows["als"]), "ours_rows": int(n_rows["ours"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=384, help="vector size (384: the product's MiniLM vectors)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--ratings-per-user", type=int, default=20)
    parser.add_argument("--block-rows", type=int, default=256)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    users, items = _unit(rng, args.users, args.dim), _unit(rng, args.items, args.dim)
    kern = kernel(users, items, args.k, args.cores, args.block_rows)
    spark = spark_vs_als(users, items, args.k, args.cores, args.ratings_per_user, args.block_rows)
    print(f"blocked top-{args.k}: {args.users} users x {args.items} items x {args.dim} dims on {args.cores} cores")
    print(f"  block_topk      : {kern['topk_gflops']:7.1f} GFLOP/s ({kern['topk_s']} s; rows sorted best first: "
          f"{kern['sorted_gflops']} GFLOP/s, {kern['sorted_s']} s, ratio {kern['sorted_ratio']:.2f})")
    print(f"  numpy matmul    : {kern['numpy_gflops']:7.1f} GFLOP/s ({kern['numpy_s']} s; full product "
          f"{kern['numpy_full_gflops']}, blocked into a buffer {kern['numpy_blocked_gflops']})"
          f"   ratio = {kern['ratio']:.2f}")
    print(f"  Spark retrieval : {spark['ours_s']:7.2f} s for {spark['ours_rows']} rows")
    print(f"  ALS recommendForAllUsers: {spark['als_s']:7.2f} s for {spark['als_rows']} rows"
          f"   ALS / ours = {spark['speedup']:.1f}x")
    print(json.dumps({"args": vars(args), "kernel": kern, "spark": spark}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
