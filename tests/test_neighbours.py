"""Item neighbours learned from behaviour (EASE, item-KNN cosine): the numerics on planted
partners, the per-user sums the ranker blends, and the stage that writes ``item_neighbours``."""
import datetime as dt

import numpy as np
from pyspark.sql import functions as F

from jobs import fit_neighbours as stage
from jobs.common import delta_io
from jobs.common.config import with_values
from jobs.ranking.neighbours import COSINE, EASE, best_per_user, fit_neighbours, neighbour_sums
from schemas.registry import table
from udfs.ease import binary_rows, ease_weights, gram_partition, top_neighbours

DS = dt.date(2026, 6, 30)


def _planted_lists(n_users=120, n_items=20, seed=3):
    """Items come in partner pairs (2k, 2k+1): every user holds both items of two pairs, plus
    one random item, so each item's partner is the item that co-occurs with it most."""
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(n_users):
        pairs = rng.choice(n_items // 2, size=2, replace=False)
        items = {int(2 * p) for p in pairs} | {int(2 * p + 1) for p in pairs} | {int(rng.integers(n_items))}
        lists.append(sorted(items))
    return lists


def test_ease_ranks_each_items_planted_partner_first():
    lists = _planted_lists()
    n = 20
    gram = next(gram_partition(iter(lists), n, chunk=7))           # several chunks
    x = binary_rows(lists, n)
    np.testing.assert_allclose(gram, x.T.astype(np.float64) @ x)
    weights = ease_weights(gram, reg=10.0)
    assert np.all(np.diag(weights) == 0)
    src, dst, w = top_neighbours(weights, 1)
    assert {int(s): int(d) for s, d in zip(src, dst)} == {i: i ^ 1 for i in range(n)}
    assert np.all(w > 0)


def test_ease_scores_match_the_closed_form():
    lists = _planted_lists(n_users=40, n_items=8, seed=5)
    x = binary_rows(lists, 8).astype(np.float64)
    b = ease_weights(x.T @ x, reg=3.0)
    # B minimises ||X - XB||^2 + reg ||B||^2 subject to diag(B) = 0: the gradient vanishes off the diagonal
    grad = -x.T @ (x - x @ b) + 3.0 * b
    off = ~np.eye(8, dtype=bool)
    assert np.abs(grad[off]).max() < 1e-3


def test_top_neighbours_keeps_positive_weights_and_breaks_ties_by_index():
    w = np.array([[0.0, 0.5, 0.5, -1.0], [0.2, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.1, 0.0]],
                 dtype=np.float32)
    src, dst, vals = top_neighbours(w, 2)
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (0, 2), (1, 0), (3, 0), (3, 1)]
    assert vals.tolist() == [0.5, 0.5, np.float32(0.2), np.float32(0.3), np.float32(0.3)]
    # signed: the largest in magnitude, negative ones too; zeros and the diagonal never
    src, dst, vals = top_neighbours(w, 2, signed=True)
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 3), (0, 1), (1, 0), (3, 0), (3, 1)]
    assert vals.tolist() == [-1.0, 0.5, np.float32(0.2), np.float32(0.3), np.float32(0.3)]


def test_signed_pruning_keeps_the_sums_closer_to_full_ease():
    lists = _planted_lists(n_users=300, n_items=40, seed=7)
    x = binary_rows(lists, 40).astype(np.float64)
    full = ease_weights(x.T @ x, reg=5.0).astype(np.float64)

    def pruned(signed):
        b = np.zeros_like(full)
        src, dst, w = top_neighbours(full.astype(np.float32), 8, signed=signed)
        b[src, dst] = w
        return b

    exact = x @ full
    err = {signed: np.abs(x @ pruned(signed) - exact).mean() for signed in (True, False)}
    assert err[True] < err[False]


def _events(spark, lists, day=DS):
    rows = [(f"e{u}-{i}", f"u{u:03d}", f"i{i:02d}", "click", dt.datetime.combine(day, dt.time(8, i)), None, None, False,
             "f", "run-0", day) for u, items in enumerate(lists) for i in items]
    return spark.createDataFrame(rows, table("events_clean").schema)


def _partners(df):
    best = {}
    for r in df.collect():                                                 # 20 items x a few neighbours
        if r["weight"] > best.get(r["item_id"], (None, -1.0))[1]:
            best[r["item_id"]] = (r["neighbour_id"], r["weight"])
    return {k: v[0] for k, v in best.items()}


def test_the_spark_fit_finds_planted_partners_with_ease_and_switches_to_cosine_above_the_cap(spark):
    events = _events(spark, _planted_lists())
    expected = {f"i{i:02d}": f"i{i ^ 1:02d}" for i in range(20)}
    got, method = fit_neighbours(events, reg=10.0, per_item=3, max_items=20, max_user_items=50)
    assert method == EASE and _partners(got) == expected
    assert got.groupBy("item_id").count().agg(F.max("count")).first()[0] <= 3
    got, method = fit_neighbours(events, reg=10.0, per_item=3, max_items=19, max_user_items=50)
    assert method == COSINE and _partners(got) == expected


def test_neighbour_sums_add_the_weights_from_the_users_items_and_name_the_strongest(spark):
    mine = spark.createDataFrame([("u1", "a"), ("u1", "b"), ("u2", "b")], "user_id string, item_id string")
    nbs = spark.createDataFrame([("a", "x", 0.5), ("b", "x", 0.25), ("b", "y", 0.75), ("c", "x", 9.0),
                                 ("a", "z", -0.5), ("b", "z", 0.125)],
                                "item_id string, neighbour_id string, weight double")
    sums = neighbour_sums(mine, nbs)
    got = {(r["user_id"], r["item_id"]): (r["neighbours"], r["nb_from"]) for r in sums.collect()}
    # EASE's negative weights count in the sum but never name the reason: u1's z is named after b,
    # its one positive weight, and a user with only a negative weight to an item gets no name
    assert got == {("u1", "x"): (0.75, "a"), ("u1", "y"): (0.75, "b"), ("u2", "x"): (0.25, "b"),
                   ("u2", "y"): (0.75, "b"), ("u1", "z"): (-0.375, "b"), ("u2", "z"): (0.125, "b")}
    alone = neighbour_sums(mine.where("item_id = 'a'"), nbs.where("neighbour_id = 'z'")).first()
    assert (alone["neighbours"], alone["nb_from"]) == (-0.5, None)
    top = {(r["user_id"], r["item_id"]) for r in best_per_user(sums, 1).collect()}
    assert top == {("u1", "x"), ("u2", "y")}                            # tie in u1 goes to the lower id


def test_the_stage_writes_the_dates_neighbours_in_the_window(spark, lake_cfg):
    lists = _planted_lists()
    old = _events(spark, [[0, 2, 4, 6]] * 50, DS - dt.timedelta(days=40))     # outside a 30-day window
    delta_io.overwrite(_events(spark, lists).unionByName(old), lake_cfg, "events_clean")
    cfg = with_values(lake_cfg, {"neighbours.lookback_days": 30, "neighbours.per_item": 2, "neighbours.reg": 10.0})
    summary = stage.run(spark, cfg, DS, "run-1")
    assert summary["method"] == EASE and summary["items"] == 20
    written = delta_io.read_table(spark, cfg, "item_neighbours").where(F.col("ds") == F.lit(DS))
    assert _partners(written) == {f"i{i:02d}": f"i{i ^ 1:02d}" for i in range(20)}
    assert {r["run_id"] for r in written.select("run_id").distinct().collect()} == {"run-1"}
    assert summary["pairs"] == written.count() <= 40
