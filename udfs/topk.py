"""Blocked top-K retrieval: user-vector blocks against the item matrix, never a row-level cross join.

Each block of users is multiplied with the whole item matrix (or one shard of it) with torch
(GPU when the task has one), and only the K best items per user are kept. Shards are merged
with a second top-K.
"""
from typing import Iterator

import numpy as np
import pandas as pd

from udfs.device import pick_device, set_torch_threads


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
    k = min(k, items.shape[0])
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    item_t = torch.as_tensor(items, dtype=dtype, device=dev)
    scores = np.empty((users.shape[0], k), dtype=np.float32)
    index = np.empty((users.shape[0], k), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, users.shape[0], block_rows):
            u = torch.as_tensor(users[start:start + block_rows], dtype=dtype, device=dev)
            top = torch.topk(u @ item_t.T, k, dim=1)
            scores[start:start + len(u)] = top.values.float().cpu().numpy()
            index[start:start + len(u)] = top.indices.cpu().numpy()
    return scores, index


def topk_frames(batches: Iterator[pd.DataFrame], item_ids: np.ndarray, item_matrix: np.ndarray, k: int,
                block_rows: int, shard: int) -> Iterator[pd.DataFrame]:
    """mapInPandas body: ``(user_id, embedding)`` batches -> ``(user_id, item_id, cosine, shard)`` rows."""
    set_torch_threads()
    for batch in batches:
        if batch.empty:
            continue
        users = np.stack(batch["embedding"].to_numpy()).astype(np.float32)
        scores, index = block_topk(users, item_matrix, k, block_rows)
        kk = scores.shape[1]
        yield pd.DataFrame({
            "user_id": np.repeat(batch["user_id"].to_numpy(), kk),
            "item_id": item_ids[index.ravel()],
            "cosine": scores.ravel().astype(np.float64),
            "shard": np.int32(shard),
        })


def shard_matrix(broadcast_value) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, item matrix) of a broadcast shard.

    Spark already deserialises a broadcast once per worker; no cache of our own here (keying
    one on the value's id() can hand a reused worker a stale shard).
    """
    return np.asarray(broadcast_value["ids"]), np.asarray(broadcast_value["matrix"], dtype=np.float32)
