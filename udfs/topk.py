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
    import torch

    dev = pick_device(device)
    n_items = items.shape[0]
    k = min(k, n_items)
    g = group_size(n_items, k)
    padded = -(-n_items // g) * g                                  # columns, a multiple of g
    on_cpu = dev.type == "cpu"
    dtype = torch.float32 if on_cpu else torch.float16
    item_t = torch.zeros((items.shape[1], padded), dtype=dtype, device=dev)
    item_t[:, :n_items] = torch.from_numpy(np.array(items, dtype=np.float32)).to(dev, dtype).T  # a writable copy
    scores = np.empty((users.shape[0], k), dtype=np.float32)
    index = np.empty((users.shape[0], k), dtype=np.int64)
    buf = torch.empty((min(block_rows, max(users.shape[0], 1)), padded), dtype=dtype, device=dev)
    with torch.inference_mode():
        for start in range(0, users.shape[0], block_rows):
            block = np.array(users[start:start + block_rows], dtype=np.float32)
            out = buf[:len(block)]
            # torch.mm, not numpy's BLAS: numpy's idle BLAS threads spin while torch's threads
            # select, which measured 3x slower on 2 cores
            torch.mm(torch.from_numpy(block).to(dev, dtype), item_t, out=out)
            if padded > n_items:
                out[:, n_items:] = float("-inf")                   # padding never wins
            values, idx = select_topk(out, k, g)
            scores[start:start + len(block)] = values.float().cpu().numpy()
            index[start:start + len(block)] = idx.cpu().numpy()
    return scores, index


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


def topk_batches(batches: Iterator, item_ids, item_matrix: np.ndarray, k: int, block_rows: int,
                 shard: int) -> Iterator:
    """mapInArrow body: ``(user_id, embedding)`` record batches -> ``(user_id, item_id, cosine, shard)``.

    Ids are taken with Arrow kernels, so no Python object is made per output row.
    """
    import pyarrow as pa

    set_torch_threads()
    for batch in batches:
        if batch.num_rows == 0:
            continue
        users = vectors(batch.column("embedding"))
        scores, index = block_topk(users, item_matrix, k, block_rows)
        kk = scores.shape[1]
        yield pa.RecordBatch.from_arrays([
            batch.column("user_id").take(pa.array(np.repeat(np.arange(batch.num_rows), kk))),
            item_ids.take(pa.array(index.ravel())),
            pa.array(scores.ravel().astype(np.float64)),
            pa.array(np.full(scores.size, shard, dtype=np.int32)),
        ], names=["user_id", "item_id", "cosine", "shard"])


def shard_value(table) -> dict:
    """What one broadcast shard carries: item ids (Arrow) and the float32 matrix, from an Arrow
    table of ``(item_id, embedding)``."""
    return {"ids": table.column("item_id").combine_chunks(), "matrix": vectors(table.column("embedding"))}
