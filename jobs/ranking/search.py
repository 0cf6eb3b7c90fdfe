"""Blend weights searched directly on NDCG@10 by coordinate ascent, with cross-fitting.

A pointwise fit (``jobs.ranking.learn``) learns to tell a user's next item from sampled
negatives; what the lists are judged by is where that item lands among all of the user's
candidates. The search optimises that directly: from the best single component (or the fixed
blend), every sweep tries each component's weight plus each of ``steps`` in turn and keeps the
best change that raises the mean NDCG@10 of the users it learns from, until a sweep changes
nothing or ``sweeps`` are done (coordinate ascent on a ranking metric, as in Metzler and Croft's
linear feature-based models).

Scoring a weight vector needs no sorting: a held-out item's rank is one plus the number of the
user's candidates the vector scores above it (an equal score: the lower item id first, as
:func:`jobs.ranking.learn.ndcg_of` breaks ties). So the (held-out item, candidate) pairs of
z-score differences are built once, each user's in one partition, and one pass (numpy in
``mapInPandas``) counts, for many weight vectors at once, how many candidates beat each held-out
item and sums the users' NDCG by fold within the partition; only sums by (fold, vector) are
shuffled and come back to the driver, a handful of numbers whatever the number of users.

The searches run side by side in the same passes: one per fold on the users of the other folds
(judged on the fold it left out, so the search competes with the fitted model and the single
components on the same out-of-fold footing) and one on every user, whose weights are kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas import columns as c
from schemas.components import Component

log = logging.getLogger(__name__)

POS = "_pos"
AHEAD_ON_TIE = "_ahead_on_tie"
VECTOR = "_v"


@dataclass
class Searched:
    """The search's outcome: the weights found on every user, the out-of-fold NDCG of the
    per-fold searches, how many passes it took and the path of the all-user search."""

    weights: dict[str, float]
    out_of_fold_ndcg: float
    in_sample_ndcg: float
    passes: int
    path: list[dict] = field(default_factory=list)


def pair_frame(rows: DataFrame, label: str, z_cols: Sequence[str]) -> DataFrame:
    """(user_id, held-out item, ahead-on-tie flag, d_<z>...) for every labelled candidate (the
    held-out item) against every other candidate of its user: candidate minus held-out z-scores.
    Each held-out item also meets itself once with all differences 0 (it never counts as above
    itself), so an item without rivals still has its row."""
    pos = rows.where(F.col(label) == 1.0).select(c.USER_ID, F.col(c.ITEM_ID).alias(POS),
                                                  *[F.col(z).alias(f"p{z}") for z in z_cols])
    rivals = (rows.select(c.USER_ID, c.ITEM_ID, *z_cols).join(pos, c.USER_ID)
              .where(F.col(c.ITEM_ID) != F.col(POS))
              .select(c.USER_ID, POS, (F.col(c.ITEM_ID) < F.col(POS)).alias(AHEAD_ON_TIE),
                      *[(F.col(z) - F.col(f"p{z}")).cast("double").alias(f"d{z}") for z in z_cols]))
    itself = pos.select(c.USER_ID, POS, F.lit(False).alias(AHEAD_ON_TIE),
                        *[F.lit(0.0).cast("double").alias(f"d{z}") for z in z_cols])
    return rivals.unionByName(itself)


def ideal_dcg_frame(truth: DataFrame, fold: "F.Column", k: int) -> DataFrame:
    """(user_id, _fold, _idcg) for every user of ``truth`` (user_id, item_id): the ideal DCG@k of
    their distinct held-out items, as ``jobs.common.metrics`` defines NDCG."""
    n = truth.select(c.USER_ID, c.ITEM_ID).distinct().groupBy(c.USER_ID).agg(F.count("*").alias("_n"))
    idcg = F.expr(f"aggregate(sequence(1, least(_n, {int(k)})), 0D, (acc, r) -> acc + 1D / log2(r + 1))")
    return n.select(c.USER_ID, fold.alias("_fold"), idcg.alias("_idcg"))


def _ndcg_sums(d_cols: list[str], vectors: np.ndarray, k: int):
    """mapInPandas function over pairs whose users each lie whole in one partition: per fold and
    weight vector (a column of ``vectors``), the partition's sum of users' NDCG@k. A held-out
    item's rank is one plus the candidates the vector scores above it; the counts of a (user,
    held-out item) may span the partition's batches, so they are summed over all of them first."""
    import pandas as pd

    n_vectors = vectors.shape[1]
    keys = [c.USER_ID, POS, "_fold", "_idcg"]

    def sums(batches):
        parts = []
        for pdf in batches:
            if pdf.empty:
                continue
            diff = pdf[d_cols].to_numpy(dtype=np.float64) @ vectors
            above = (diff > 0) | ((diff == 0) & pdf[AHEAD_ON_TIE].to_numpy(dtype=bool)[:, None])
            parts.append(pd.DataFrame(above.astype(np.int64)).groupby([pdf[key] for key in keys]).sum())
        if not parts:
            return
        above = pd.concat(parts).groupby(level=keys).sum()                   # a row per held-out item
        ranks = above.to_numpy()
        gain = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
        index = above.index.to_frame(index=False)
        ndcg = pd.DataFrame(gain).groupby([index[c.USER_ID], index["_fold"], index["_idcg"]]).sum()
        user = ndcg.index.to_frame(index=False)
        per_fold = (pd.DataFrame(ndcg.to_numpy() / user["_idcg"].to_numpy()[:, None])
                    .groupby(user["_fold"].to_numpy()).sum())                   # [fold, vector]
        yield pd.DataFrame({"_fold": np.repeat(per_fold.index.to_numpy(dtype=np.int32), n_vectors),
                            VECTOR: np.tile(np.arange(n_vectors, dtype=np.int32), len(per_fold)),
                            "_ndcg": per_fold.to_numpy().reshape(-1)})

    return sums


def fold_sums(pairs: DataFrame, d_cols: list[str], vectors: np.ndarray, folds: int, k: int) -> np.ndarray:
    """``[fold, vector]``: the sum over the fold's users of NDCG@k when ranking by each weight
    vector (columns of ``vectors``, one row per z column). ``pairs``: :func:`pair_frame` with each
    user's ``_fold`` and ``_idcg``, every user's rows in one partition. One Spark job, whose only
    shuffle is of partitions x folds x vectors sums; folds x vectors numbers come back."""
    schema = f"_fold int, {VECTOR} int, _ndcg double"
    got = (pairs.mapInPandas(_ndcg_sums(d_cols, vectors, k), schema).groupBy("_fold", VECTOR)
           .agg(F.sum("_ndcg").alias("_ndcg")).collect())                       # folds x vectors rows
    out = np.zeros((folds, vectors.shape[1]))
    for r in got:
        out[int(r["_fold"]), int(r[VECTOR])] = float(r["_ndcg"])
    return out


def search_weights(rows: DataFrame, truth: DataFrame, label: str, fold: "F.Column", folds: int,
                   components: Sequence[Component], starts: Mapping[str, Mapping[str, float]],
                   steps: Sequence[float], sweeps: int, k: int = 10) -> Searched:
    """Coordinate ascent on NDCG@k over the ``z_<component>`` columns of ``rows`` (labelled
    candidates; ``fold`` gives a user's fold), judged against ``truth`` (user_id, item_id).

    Args:
        starts: Named weight vectors to start from (each search takes the best on its own users).
        steps: What is added to one weight at a time.
        sweeps: Passes over the components (each component tried once per sweep).
    """
    names = [comp.name for comp in components]
    demoting = np.array([comp.demotes for comp in components])
    d_cols = [f"dz_{n}" for n in names]
    ideal = ideal_dcg_frame(truth, fold, k).persist(StorageLevel.MEMORY_AND_DISK)
    # every user's pairs in one partition, with the user's fold and ideal DCG (users of ``truth``
    # without pairs add 0 to their fold's sum and count in its users below)
    pairs = (pair_frame(rows, label, [f"z_{n}" for n in names]).join(ideal, c.USER_ID)
             .repartition(c.USER_ID).persist(StorageLevel.MEMORY_AND_DISK))
    try:
        users = np.zeros(folds)
        for r in ideal.groupBy("_fold").count().collect():                        # a row a fold
            users[int(r["_fold"])] = float(r["count"])
        # search a < folds learns on the other folds' users; search `folds` on every user
        learns_on = np.array([[f != a for f in range(folds)] for a in range(folds)] + [[True] * folds], dtype=float)
        n_learn = learns_on @ users
        passes = 0

        def evaluate(vectors: list[np.ndarray]) -> np.ndarray:
            nonlocal passes
            passes += 1
            return fold_sums(pairs, d_cols, np.stack(vectors, axis=1), folds, k)

        start_vectors = [np.array([float(w.get(n, 0.0)) for n in names]) for w in starts.values()]
        sums = evaluate(start_vectors)
        train = (learns_on @ sums) / np.maximum(n_learn, 1.0)[:, None]           # [search, vector]
        best = train.argmax(axis=1)
        current = [start_vectors[b].copy() for b in best]
        value = [float(train[a, b]) for a, b in enumerate(best)]
        own = [float(sums[a, best[a]]) if a < folds else 0.0 for a in range(folds + 1)]   # on its left-out fold
        path = [{"sweep": 0, "start": list(starts)[best[folds]], "ndcg": round(value[folds], 6)}]
        active = [True] * (folds + 1)          # a search stops after a sweep that changed nothing
        for sweep in range(1, sweeps + 1):
            changed = [False] * (folds + 1)
            for i, name in enumerate(names):
                tried, owner = [], []
                for a in (a for a in range(folds + 1) if active[a]):
                    for step in steps:
                        w = current[a].copy()
                        w[i] += float(step)
                        if (demoting[i] and w[i] > 0) or not np.any(w[~demoting]):
                            continue
                        tried.append(w)
                        owner.append(a)
                if not tried:
                    continue
                sums = evaluate(tried)
                owner_arr = np.array(owner)
                for a in range(folds + 1):
                    mine = np.flatnonzero(owner_arr == a)
                    if not len(mine):
                        continue
                    scores = (learns_on[a] @ sums[:, mine]) / max(n_learn[a], 1.0)
                    j = int(scores.argmax())
                    if scores[j] > value[a] + 1e-9:
                        current[a], value[a], changed[a] = tried[mine[j]], float(scores[j]), True
                        if a < folds:
                            own[a] = float(sums[a, mine[j]])
                        else:
                            path.append({"sweep": sweep, "component": name, "weight": round(float(current[a][i]), 4),
                                         "ndcg": round(value[a], 6)})
            active = changed
            if not any(active):
                break
        out_of_fold = float(sum(own[:folds]) / max(users.sum(), 1.0))
        weights = {n: float(w) for n, w in zip(names, current[folds])}
        log.info("searched blend: NDCG@%d %.4f out of fold (%.4f on every user), %d passes", k, out_of_fold,
                 value[folds], passes)
        return Searched(weights, out_of_fold, value[folds], passes, path)
    finally:
        pairs.unpersist()
        ideal.unpersist()
