"""Blocked top-K retrieval: user-vector blocks against the item matrix, never a row-level cross join.

Each block of users is multiplied with the whole item matrix (or one shard of it) with torch
(GPU when the task has one), and only the K best items per user are kept. Shards are merged
with a second top-K.

Selecting K of I scores per row costs more than the product itself when the vectors are short
(64 dims: 128 flops per score), so the selection is done in two exact stages: the I columns
are split into G strided groups of g (column j belongs to group j mod G), the group maxima are
one vectorised pass, the K groups with the largest maxima are kept, and the final top-K runs
over those K * g scores only. It is exact: every score outside the kept groups is at most the
K-th largest group maximum, and the kept groups hold K scores at least that large.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from udfs.device import pick_device, set_torch_threads


def group_size(n_items: int, k: int) -> int:
    """Columns per group for the two-stage selection, or 1 when one full top-K is cheaper.

    The stages scan G + K * g scores per row with G * g = I, least at g = sqrt(I / K).
    """
    g = int(round(math.sqrt(n_items / max(k, 1))))
    return g if g >= 3 and math.ceil(n_items / g) >= 2 * k else 1


def select_topk(scores, k: int, g: int):
    """Exact ``(values, indices)`` of the ``k`` largest entries per row of a 2-D torch tensor,
    best first; ``g`` columns per group (see :func:`group_size`; 1 = one plain top-K). The
    number of columns must be a multiple of ``g``."""
    import torch

    if g <= 1:
        return torch.topk(scores, k, dim=1)
    rows, cols = scores.shape
    n_groups = cols // g
    strided = scores.view(rows, g, n_groups)                      # [r, m, j] = column m * G + j
    kept = torch.topk(strided.amax(dim=1), k, dim=1, sorted=False).indices               # (rows, k)
    cand = strided.gather(2, kept.unsqueeze(1).expand(rows, g, k)).reshape(rows, g * k)  # [r, m * k + q]
    top = torch.topk(cand, k, dim=1)
    member, slot = torch.div(top.indices, k, rounding_mode="floor"), top.indices % k
    return top.values, member * n_groups + kept.gather(1, slot)


class ItemMatrix:
    """The item side of the blocked top-K, prepared once: transposed, padded to a multiple of
    the group size, on the device (float16 on a GPU, float32 on the CPU)."""

    def __init__(self, items: np.ndarray, k: int, device: str = "auto") -> None:
        import torch

        self.device = pick_device(device)
        self.dtype = torch.float32 if self.device.type == "cpu" else torch.float16
        self.n_items = items.shape[0]
        self.k = min(k, self.n_items)
        self.g = group_size(self.n_items, self.k)
        padded = -(-self.n_items // self.g) * self.g               # columns, a multiple of g
        self.t = torch.zeros((items.shape[1], padded), dtype=self.dtype, device=self.device)
        self.t[:, :self.n_items] = torch.from_numpy(np.array(items, dtype=np.float32)).to(self.device, self.dtype).T

    def topk(self, users: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, indices)`` of every user row, each ``(U, k)``, best first."""
        import torch

        k, padded = self.k, self.t.shape[1]
        scores = np.empty((users.shape[0], k), dtype=np.float32)
        index = np.empty((users.shape[0], k), dtype=np.int64)
        buf = torch.empty((min(block_rows, max(users.shape[0], 1)), padded), dtype=self.dtype, device=self.device)
        with torch.inference_mode():
            for start in range(0, users.shape[0], block_rows):
                block = np.array(users[start:start + block_rows], dtype=np.float32)   # a writable copy
                out = buf[:len(block)]
                # torch.mm, not numpy's BLAS: numpy's idle BLAS threads spin while torch's
                # threads select, which measured 3x slower on 2 cores
                torch.mm(torch.from_numpy(block).to(self.device, self.dtype), self.t, out=out)
                if padded > self.n_items:
                    out[:, self.n_items:] = float("-inf")          # padding never wins
                values, idx = select_topk(out, k, self.g)
                scores[start:start + len(block)] = values.float().cpu().numpy()
                index[start:start + len(block)] = idx.cpu().numpy()
        return scores, index


def block_topk(users: np.ndarray, items: np.ndarray, k: int, block_rows: int = 2048,
               device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of every user row against all item rows.

    Args:
        users: ``(U, d)`` float32.
        items: ``(I, d)`` float32.
        k: Items kept per user (capped at I).
        block_rows: Users per matrix multiplication.
        device: ``auto`` (task GPU > cuda:0 > cpu), ``cpu`` or ``cuda:N``.

    Returns:
        ``(scores, indices)``, each ``(U, min(k, I))``, best first.
    """
    return ItemMatrix(items, k, device).topk(users, block_rows)


def vectors(column, name: str = "embedding") -> np.ndarray:
    """``(n, d)`` float32 view of an Arrow list column of equal-length vectors (no per-row copies).

    Raises ValueError naming the column when a vector is NULL or the lengths differ.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return np.empty((0, 0), dtype=np.float32)
    if column.null_count:
        raise ValueError(f"{name}: {column.null_count} NULL vector(s); drop or re-encode those rows")
    lengths = pc.list_value_length(column)
    bounds = pc.min_max(lengths)
    if bounds["min"].as_py() != bounds["max"].as_py():
        raise ValueError(f"{name}: vectors of different lengths ({bounds['min']}..{bounds['max']}); "
                         "re-encode the table with one model")
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, -1)


def topk_batches(batches: Iterator, item_ids, item_matrix: np.ndarray, k: int, block_rows: int) -> Iterator:
    """mapInArrow body: ``(user_id, embedding)`` record batches -> ``(user_id, item_id, cosine)``.

    The item matrix is prepared once per task; ids are taken with Arrow kernels, so no Python
    object is made per output row.
    """
    import pyarrow as pa

    set_torch_threads()
    items = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if items is None:
            items = ItemMatrix(item_matrix, k)
        scores, index = items.topk(vectors(batch.column("embedding")), block_rows)
        yield pa.RecordBatch.from_arrays([
            batch.column("user_id").take(pa.array(np.repeat(np.arange(batch.num_rows), scores.shape[1]))),
            item_ids.take(pa.array(index.ravel())),
            pa.array(scores.ravel().astype(np.float64)),
        ], names=["user_id", "item_id", "cosine"])


def shard_value(table) -> dict:
    """What one broadcast shard carries: item ids (Arrow) and the float32 matrix, from an Arrow
    table of ``(item_id, embedding)``."""
    return {"ids": table.column("item_id").combine_chunks(), "matrix": vectors(table.column("embedding"))}
