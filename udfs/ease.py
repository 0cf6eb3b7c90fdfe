"""Item-item numerics on the binary user x item matrix (pure numpy, unit-testable without Spark).

EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data") from the Gram matrix
``G = X^T X``, and each item's best neighbours from an item x item weight matrix. The
Gram matrix is summed partition by partition (:func:`gram_partition`), so whoever calls these holds
one item x item matrix, never the events.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np


def binary_rows(item_lists: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """The binary user x item matrix ``(len(item_lists), n)`` float32 of lists of item indices."""
    x = np.zeros((len(item_lists), n), dtype=np.float32)
    for r, items in enumerate(item_lists):
        x[r, list(items)] = 1.0
    return x


def gram_partition(item_lists: Iterable[Sequence[int]], n: int, chunk: int = 1024) -> Iterator[np.ndarray]:
    """Partition body: yields ``X^T X`` (float64, ``n`` x ``n``) of the partition's binary item rows,
    built ``chunk`` users at a time."""
    gram = np.zeros((n, n), dtype=np.float64)
    block: list = []
    for items in item_lists:
        block.append(items)
        if len(block) >= chunk:
            x = binary_rows(block, n)
            gram += x.T.astype(np.float64) @ x
            block.clear()
    if block:
        x = binary_rows(block, n)
        gram += x.T.astype(np.float64) @ x
    yield gram


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """EASE: ``B = I - P diag(1 / diag(P))`` with ``P = (G + reg I)^-1``, so that ``B[i, i] = 0``;
    the score of item j for a user is the sum of ``B[i, j]`` over their items i."""
    g = gram.astype(np.float64, copy=True)
    g[np.diag_indices_from(g)] += reg
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def top_neighbours(weights: np.ndarray, k: int, signed: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(source, neighbour, weight)`` index arrays: each row's ``k`` largest positive off-diagonal
    entries, or with ``signed`` its ``k`` largest in magnitude (non-zero; the negative ones too),
    ties by the lower index, so the same matrix always gives the same rows.

    EASE needs ``signed``: its score is a sum over the user's items, and the negative weights keep
    what co-occurs with everything from outranking what co-occurs with the user's items in
    particular. Keeping only the positive ones drifts further from the full model the more of
    them are kept."""
    n = weights.shape[0]
    k = min(k, max(n - 1, 0))
    if k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    w = weights.astype(np.float32, copy=True)
    key = np.abs(w) if signed else w.copy()
    key[np.diag_indices_from(key)] = -np.inf
    order = np.argsort(-key, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(w, order, 1)
    keep = np.take_along_axis(key, order, 1) > 0
    src = np.repeat(np.arange(n), k).reshape(n, k)
    return src[keep], order[keep], vals[keep].astype(np.float32)
