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

On the CPU the two selections are numpy's ``argpartition`` on the same memory (about 3x faster
than ``torch.topk``), and the blocks are spread over one Python thread per core, each with its
own single-threaded product, so no thread pool spins while another works. On a GPU everything
stays on the device.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from udfs.device import pick_device, set_torch_threads


def group_size(n_items: int, k: int) -> int:
    """Columns per group for the two-stage selection, or 1 when one full top-K is cheaper.

    The stages scan G + K * g scores per row with G * g = I, least at g = sqrt(I / K).
    """
    g = int(round(math.sqrt(n_items / max(k, 1))))
    return g if g >= 3 and math.ceil(n_items / g) >= 2 * k else 1


def _largest(x, k: int, host: bool):
    """Column indices of the ``k`` largest entries per row of a 2-D tensor, in no order. In host
    memory numpy's ``argpartition`` (introselect) does it about 3x faster than ``torch.topk``."""
    import torch

    if host:
        n = x.shape[1]
        return torch.from_numpy(np.argpartition(x.numpy(), n - k, axis=1)[:, n - k:])
    return torch.topk(x, k, dim=1, sorted=False).indices


def select_topk(scores, k: int, g: int, ordered: bool = True, host: bool | None = None):
    """Exact ``(values, indices)`` of the ``k`` largest entries per row of a 2-D torch tensor;
    ``g`` columns per group (see :func:`group_size`; 1 = one plain selection). The number of
    columns must be a multiple of ``g``.

    ``ordered``: best first, equal scores by column ascending; otherwise in no particular order
    (the ranker re-orders its candidates anyway). Which of several scores tied exactly at the
    k-th value is kept is fixed but unspecified. ``host``: select with numpy (default: when the
    scores are in host memory) rather than ``torch.topk``.
    """
    import torch

    host = scores.device.type == "cpu" if host is None else host
    rows, cols = scores.shape
    if g <= 1:
        index = _largest(scores, k, host)
        values = scores.gather(1, index)
    else:
        n_groups = cols // g
        strided = scores.view(rows, g, n_groups)                  # [r, m, j] = column m * G + j
        kept = _largest(strided.amax(dim=1), k, host)                                         # (rows, k)
        cand = strided.gather(2, kept.unsqueeze(1).expand(rows, g, k)).reshape(rows, g * k)  # [r, m * k + q]
        best = _largest(cand, k, host)
        values = cand.gather(1, best)
        index = torch.div(best, k, rounding_mode="floor") * n_groups + kept.gather(1, best % k)
    if ordered:
        by_column = torch.argsort(index, dim=1)
        values, index = values.gather(1, by_column), index.gather(1, by_column)
        by_value = torch.argsort(values, dim=1, descending=True, stable=True)
        values, index = values.gather(1, by_value), index.gather(1, by_value)
    return values, index


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

    def topk(self, users: np.ndarray, block_rows: int, ordered: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, indices)`` of every user row, each ``(U, k)``; best first when ``ordered``."""
        import torch

        n = users.shape[0]
        scores = np.empty((n, self.k), dtype=np.float32)
        index = np.empty((n, self.k), dtype=np.int64)
        starts = list(range(0, n, block_rows))
        threads = torch.get_num_threads()
        workers = min(threads, len(starts)) if self.device.type == "cpu" else 1
        if workers <= 1:
            self._blocks(users, starts, block_rows, ordered, scores, index)
            return scores, index
        # one block stream per core, each with a single-threaded product: torch's own threads
        # would spin between products while numpy selects
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                for done in [pool.submit(self._blocks, users, starts[w::workers], block_rows, ordered, scores, index)
                             for w in range(workers)]:
                    done.result()
        finally:
            torch.set_num_threads(threads)
        return scores, index

    def _blocks(self, users: np.ndarray, starts: list[int], block_rows: int, ordered: bool,
                scores: np.ndarray, index: np.ndarray) -> None:
        """Top-k of the user blocks beginning at ``starts``, written into ``scores``/``index``."""
        import torch

        k, padded = self.k, self.t.shape[1]
        buf = torch.empty((min(block_rows, max(users.shape[0], 1)), padded), dtype=self.dtype, device=self.device)
        with torch.inference_mode():
            for start in starts:
                block = np.array(users[start:start + block_rows], dtype=np.float32)   # a writable copy
                out = buf[:len(block)]
                # torch.mm, not numpy's BLAS: numpy's idle BLAS threads spin while the selection
                # runs, which measured 3x slower on 2 cores
                torch.mm(torch.from_numpy(block).to(self.device, self.dtype), self.t, out=out)
                if padded > self.n_items:
                    out[:, self.n_items:] = float("-inf")          # padding never wins
                values, idx = select_topk(out, k, self.g, ordered)
                scores[start:start + len(block)] = values.float().cpu().numpy()
                index[start:start + len(block)] = idx.cpu().numpy()


def block_topk(users: np.ndarray, items: np.ndarray, k: int, block_rows: int = 2048,
               device: str = "auto", ordered: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of every user row against all item rows.

    Args:
        users: ``(U, d)`` float32.
        items: ``(I, d)`` float32.
        k: Items kept per user (capped at I).
        block_rows: Users per matrix multiplication.
        device: ``auto`` (task GPU > cuda:0 > cpu), ``cpu`` or ``cuda:N``.
        ordered: Best first per row (equal scores by index); False leaves each row's k in no
            particular order and skips the sort.

    Returns:
        ``(scores, indices)``, each ``(U, min(k, I))``.
    """
    return ItemMatrix(items, k, device).topk(users, block_rows, ordered)


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
        # unordered: the ranker orders its candidates by the blended score
        scores, index = items.topk(vectors(batch.column("embedding")), block_rows, ordered=False)
        yield pa.RecordBatch.from_arrays([
            batch.column("user_id").take(pa.array(np.repeat(np.arange(batch.num_rows), scores.shape[1]))),
            item_ids.take(pa.array(index.ravel())),
            pa.array(scores.ravel().astype(np.float64)),
        ], names=["user_id", "item_id", "cosine"])


def shard_value(table) -> dict:
    """What one broadcast shard carries: item ids (Arrow) and the float32 matrix, from an Arrow
    table of ``(item_id, embedding)``."""
    return {"ids": table.column("item_id").combine_chunks(), "matrix": vectors(table.column("embedding"))}
