"""The sequence model's training process: what ``TorchDistributor`` runs in each of its processes.

:func:`train_process` reads its shard of the training examples (Parquet, written by
``jobs/train_seqrec.py`` under ``<examples>/_shard=<rank>``) and the item vocabulary with the
language-model vectors and first appearances, builds the model (warm-started from an earlier checkpoint when given),
wraps it in DistributedDataParallel when there is more than one process (gloo on CPUs, NCCL on
GPUs), trains it (``udfs/seqrec.py``) and, in process 0, saves the checkpoint. Every process
returns the same summary (its figures are all-reduced). No Spark in here.
"""
from __future__ import annotations

import os
import time

import numpy as np

from udfs import seqrec as sq


def _read_parquet(path: str, columns: list[str]):
    import pyarrow.dataset as ds

    filesystem, p = sq._fs(path)
    return ds.dataset(p, filesystem=filesystem, format="parquet").to_table(columns=columns)


# an item without a first event: never available while training (so never a negative)
NEVER = np.iinfo(np.int64).max


def read_vocabulary(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(item_ids, vectors, first_seen)`` of the vocabulary table (``item_id``, ``idx`` 1..n,
    ``embedding``, ``first_seen``), in index order; ``vectors`` has a zero row 0 for padding;
    ``first_seen`` (per index, 0 for padding) each item's first event in epoch seconds, NEVER
    for an item without one."""
    table = _read_parquet(path, ["item_id", "idx", "embedding", "first_seen"]).sort_by("idx")
    ids = table.column("item_id").to_pylist()
    idx = table.column("idx").to_numpy()
    if not np.array_equal(idx, np.arange(1, len(ids) + 1)):
        raise ValueError(f"seqrec vocabulary {path}: idx must run 1..{len(ids)} without gaps")
    emb = table.column("embedding").combine_chunks()
    dim = len(emb[0]) if len(emb) else 0
    vectors = np.zeros((len(ids) + 1, dim), dtype=np.float32)
    if len(ids):
        vectors[1:] = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), dim)
    first = np.zeros(len(ids) + 1, dtype=np.int64)
    first[1:] = table.column("first_seen").fill_null(NEVER).to_numpy()
    return ids, vectors, first


def read_shard(path: str, rank: int) -> tuple[list, list, list]:
    """``(sequences, times, first_new)`` of one shard, users in id order (the same order every run)."""
    table = (_read_parquet(f"{path.rstrip('/')}/_shard={rank}", ["user_id", "items", "times", "first_new"])
             .sort_by("user_id"))
    return table.column("items").to_pylist(), table.column("times").to_pylist(), table.column("first_new").to_pylist()


def train_process(spec: dict) -> dict:
    """Train (one process of) the sequence model; see the module docstring.

    ``spec``: ``examples``, ``vocabulary``, ``out`` (checkpoint folder), ``config`` (the
    :class:`udfs.seqrec.SeqRecConfig` fields but ``n_items``/``lm_dim``), ``train`` (the
    :class:`udfs.seqrec.TrainSettings` fields), ``warm_from`` (a checkpoint folder or None),
    ``warm`` (only targets at or after ``first_new`` count), ``id_hash_above``, ``use_gpu``,
    ``extra`` (saved in config.json).
    """
    import torch
    import torch.distributed as dist

    t0 = time.monotonic()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpu = bool(spec.get("use_gpu")) and torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if gpu else torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if gpu else "gloo")
    try:
        settings = sq.TrainSettings(**spec["train"])
        torch.manual_seed(settings.seed)
        np.random.seed(settings.seed)
        item_ids, vectors, first_seen = read_vocabulary(spec["vocabulary"])
        arch = dict(spec["config"])
        buckets = int(spec["id_hash_buckets"]) if len(item_ids) > int(spec["id_hash_above"]) else 0
        config = sq.SeqRecConfig(n_items=len(item_ids), lm_dim=vectors.shape[1] if arch.get("use_text", True) else 0,
                                 id_buckets=buckets, **arch)
        model = sq.build_model(config, vectors if config.use_text else None, sq.id_rows(item_ids, buckets))
        if spec.get("warm_from"):
            old, old_items, _ = sq.load(spec["warm_from"])
            model.load_state_dict(sq.warm_state(old.state_dict(), old_items, model, item_ids))
        model = model.to(device)
        seqs, times, first_new = read_shard(spec["examples"], rank)
        examples = sq.make_examples(seqs, config.max_len, first_new if spec.get("warm") else None,
                                    history=settings.history or None,
                                    times=times if settings.mask_unavailable else None)

        def reduce(values: dict, op: str = "sum") -> dict:
            if world == 1:
                return values
            keys = sorted(values)
            t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
            return dict(zip(keys, t.tolist()))

        net = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[local_rank] if gpu else None)
        result = sq.train(net, examples, settings, reduce=reduce, rank=rank, world=world, available=first_seen)
        params = sum(p.numel() for p in model.parameters())
        summary = {"epochs": result.epochs, "best_epoch": result.best_epoch, "val_ndcg": result.val_ndcg,
                   "val_recall": result.val_recall, "history": result.history, "positions": result.positions,
                   "validation_users": int(reduce({"n": float(min(len(examples.val_targets),
                                                                  max(1, settings.validation_users // world)))})["n"]),
                   "params": int(params), "items": len(item_ids), "id_buckets": buckets, "processes": world,
                   "device": str(device.type), "train_seconds": round(result.seconds, 3)}
        if rank == 0:
            sq.save(spec["out"], model, item_ids, {**(spec.get("extra") or {}), "training": summary})
        if world > 1:
            dist.barrier()
        summary["seconds"] = round(time.monotonic() - t0, 3)
        return summary
    finally:
        if world > 1:
            dist.destroy_process_group()
