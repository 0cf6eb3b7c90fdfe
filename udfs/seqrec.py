"""The sequence model: causal self-attention over a user's last items (SASRec family), pure torch.

Items enter as a learned projection of their frozen language-model vector, plus (optionally) a
learned ID embedding, so that an item with text but no history still has a vector. Sequences are
left-padded with index 0 and positions count back from the newest item, so the padding in front of
a sequence changes nothing. The output at the newest position is the user vector; it lives in the
space of the item output matrix (the same item representations, tied), so the blocked top-K
retrieval of ``udfs/topk.py`` serves it.

Training (:func:`train`) is next-item prediction at every position with cross-entropy over the
whole catalogue, or a sampled softmax over ``negatives`` uniform negatives when the catalogue is
larger than ``full_softmax_max_items``; items the user already had before a position (other than
its target) are masked out of that position's softmax (``mask_seen``), and so are items that had
not yet appeared at the target's time (``mask_unavailable``, given the targets' times and the
items' first appearances). Validation is each user's
last item, ranked against the whole catalogue (NDCG@10, Recall@10); training stops when it has not
improved for ``patience`` epochs and keeps the best epoch. Everything is seeded: on a CPU the same
data and seed give the same model.

Checkpoints are a folder: ``model.pt`` (state dict), ``config.json`` (the architecture) and
``items.json`` (the vocabulary: item id per index, index 0 = padding).
"""
from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

PAD = 0
# Initial scale of the learned item ID and position embeddings (GPT-2's). The two are summed before
# a layer norm, so they must start at one scale: with torch's default N(0, 1) positions beside
# 0.02 items, the normalised input was nearly all position, every user got the same vector, and
# training first learned one list for everyone (popularity), then lost it for several epochs
# before the items' vectors grew enough to tell users apart.
INIT_STD = 0.02


@dataclass(frozen=True)
class SeqRecConfig:
    """The architecture of one model (saved with it).

    Attributes:
        n_items: Vocabulary size without the padding index (item indices are 1..n_items).
        lm_dim: Width of the language-model item vectors (0 when ``use_text`` is off).
        dim: Hidden width.
        heads: Attention heads per block.
        layers: Transformer blocks.
        max_len: Items of history the model reads (the newest).
        dropout: Dropout on embeddings, attention and feed-forward.
        use_text: Item input includes the projection of the language-model vector.
        id_embeddings: Item input includes a learned ID embedding.
        id_buckets: Rows of the ID table; 0: one row per item, otherwise items are hashed into
            this many rows (catalogues above ``seqrec.id_hash_above``).
        id_dropout: In training (with text and ID embeddings), the chance that an item's ID vector
            is left out of one batch's inputs, or of one batch's output matrix (one draw per ID
            row for each): the item is then its text alone there, as an item without history is
            when served, so the model learns to rank by the text too.
    """

    n_items: int
    lm_dim: int
    dim: int = 64
    heads: int = 2
    layers: int = 2
    max_len: int = 50
    dropout: float = 0.2
    use_text: bool = True
    id_embeddings: bool = True
    id_buckets: int = 0
    id_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not (self.use_text or self.id_embeddings):
            raise ValueError("seqrec: use_text and id_embeddings cannot both be off (items would have no input)")
        if self.dim % self.heads:
            raise ValueError(f"seqrec.dim ({self.dim}) must be a multiple of seqrec.heads ({self.heads})")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"seqrec.id_dropout ({self.id_dropout}) must be in [0, 1)")


def id_rows(item_ids: Sequence[str], buckets: int) -> np.ndarray:
    """Row of the ID table for each vocabulary index (0 = padding): the index itself, or a stable
    hash of the item id into ``buckets`` rows (1..buckets) when ``buckets`` > 0."""
    if buckets <= 0:
        return np.arange(len(item_ids) + 1, dtype=np.int64)
    rows = [zlib.crc32(str(i).encode("utf-8")) % buckets + 1 for i in item_ids]
    return np.asarray([0, *rows], dtype=np.int64)


def _torch():
    import torch

    return torch


def dropout(x, p: float, training: bool):
    """Inverted dropout from a uniform draw (on CPUs about twice as fast as ``bernoulli_``)."""
    if not training or p <= 0:
        return x
    torch = _torch()
    return x * (torch.rand_like(x) >= p).to(x.dtype) / (1.0 - p)


def build_model(config: SeqRecConfig, lm_vectors: np.ndarray | None, id_index: np.ndarray | None = None):
    """A :class:`SeqRec` module for ``config``; ``lm_vectors`` is ``(n_items + 1, lm_dim)`` with row 0
    zero (ignored when ``use_text`` is off)."""
    return _module_class()(config, lm_vectors, id_index)


_CLASS = None


def _module_class():
    """The torch module classes, defined on first use so that importing this module needs no torch."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    torch = _torch()
    nn = torch.nn
    _dropout = dropout

    class Block(nn.Module):
        """Pre-norm transformer block: x + attention(LN(x)), then x + FFN(LN(x))."""

        def __init__(self, dim: int, heads: int, dropout: float) -> None:
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.out = nn.Linear(dim, dim)
            self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
            self.p = dropout

        def forward(self, x, allowed):
            b, n, d = x.shape
            h = self.heads
            q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
            scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            p, on = self.p, self.training
            mixed = (_dropout(weights, p, on) @ v).transpose(1, 2).reshape(b, n, d)
            x = x + _dropout(self.out(mixed), p, on)
            ffn = self.down(_dropout(torch.nn.functional.gelu(self.up(self.ln2(x))), p, on))
            return x + _dropout(ffn, p, on), weights

    class SeqRec(nn.Module):
        """Causal self-attention over item sequences; see the module docstring."""

        def __init__(self, config: SeqRecConfig, lm_vectors, id_index) -> None:
            super().__init__()
            self.config = config
            n = config.n_items + 1
            if config.use_text:
                lm = torch.as_tensor(np.asarray(lm_vectors, dtype=np.float32))
                if lm.shape != (n, config.lm_dim):
                    raise ValueError(f"lm_vectors must be ({n}, {config.lm_dim}), got {tuple(lm.shape)}")
                self.register_buffer("lm", lm)
                self.proj = nn.Linear(config.lm_dim, config.dim)
            if config.id_embeddings:
                rows = config.id_buckets + 1 if config.id_buckets > 0 else n
                index = id_rows([""] * config.n_items, 0) if id_index is None else np.asarray(id_index)
                self.register_buffer("id_index", torch.as_tensor(index, dtype=torch.long))
                self.ids = nn.Embedding(rows, config.dim, padding_idx=PAD)
                # with text, an item never trained keeps a zero ID vector: its text alone places it
                if config.use_text:
                    nn.init.zeros_(self.ids.weight)
                else:
                    nn.init.normal_(self.ids.weight, std=INIT_STD)
                    with torch.no_grad():
                        self.ids.weight[PAD].zero_()
            self.pos = nn.Embedding(config.max_len, config.dim)
            nn.init.normal_(self.pos.weight, std=INIT_STD)
            self.ln_in = nn.LayerNorm(config.dim)
            self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.dropout) for _ in range(config.layers))
            self.ln_out = nn.LayerNorm(config.dim)

        def items(self, index=None):
            """Item representations (input and output, tied): ``(n, dim)`` for ``index`` (all when None)."""
            if index is None:
                index = torch.arange(self.config.n_items + 1, device=self.pos.weight.device)
            rep = 0
            if self.config.use_text:
                rep = rep + self.proj(self.lm[index])
            if self.config.id_embeddings:
                rows = self.id_index[index]
                ids = self.ids(rows)
                p = self.config.id_dropout if self.config.use_text else 0.0
                if self.training and p > 0:
                    # one draw per ID row and call: that use of the item is its text alone
                    kept = torch.rand(self.ids.num_embeddings, device=ids.device) >= p
                    ids = ids * kept[rows].unsqueeze(-1).to(ids.dtype)
                rep = rep + ids
            return rep * (index != PAD).unsqueeze(-1).to(rep.dtype)

        def forward(self, seqs, return_attention: bool = False):
            """Hidden states ``(batch, len, dim)`` of left-padded ``seqs`` ``(batch, len)``; with
            ``return_attention`` also the last block's attention of the newest position over the
            sequence ``(batch, len)`` (mean over heads)."""
            b, n = seqs.shape
            if n > self.config.max_len:
                seqs = seqs[:, -self.config.max_len:]
                n = self.config.max_len
            # positions count back from the newest item: padding in front changes nothing
            back = torch.arange(n - 1, -1, -1, device=seqs.device)
            x = self.items(seqs) + self.pos(back).unsqueeze(0)
            x = _dropout(self.ln_in(x), self.config.dropout, self.training)
            real = seqs != PAD
            causal = torch.ones(n, n, dtype=torch.bool, device=seqs.device).tril()
            eye = torch.eye(n, dtype=torch.bool, device=seqs.device)
            # a position sees itself and the real items before it (a padding row sees only itself)
            allowed = (causal.unsqueeze(0) & real.unsqueeze(1)) | eye.unsqueeze(0)
            weights = None
            for block in self.blocks:
                x, weights = block(x, allowed)
            x = self.ln_out(x)
            if return_attention:
                return x, weights[:, :, -1, :].mean(dim=1)
            return x

        def user_vectors(self, seqs):
            """``(vectors, attention)``: the newest position's hidden state, and which position it
            attended to most (index into ``seqs``' columns)."""
            hidden, att = self.forward(seqs, return_attention=True)
            att = att.masked_fill(seqs[:, -att.shape[1]:] == PAD, -1.0)
            return hidden[:, -1, :], att.argmax(dim=1) + (seqs.shape[1] - att.shape[1])

    _CLASS = SeqRec
    return _CLASS


# --------------------------------------------------------------------------------------- data
def left_pad(seqs: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """``(len(seqs), length)`` int64: each sequence's newest ``length`` items, padded in front with 0."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = list(s)[-length:]
        if s:
            out[r, length - len(s):] = s
    return out


@dataclass
class Examples:
    """Training and validation examples built from users' item sequences (oldest first).

    ``inputs``/``targets`` are left-padded ``(windows, max_len)``: position t predicts ``targets[t]``
    from ``inputs[..t]``; a user's training targets come in windows of ``max_len`` (the newest
    first), one row each; ``weight`` is 1 where a target counts (0 on padding and, in a warm start,
    on targets older than the new days). ``val_inputs``/``val_targets``: each user's last item,
    held out, with everything before it as input (users with at least 3 items). ``target_times``
    (when the sequences came with times): ``(windows, max_len)`` int64, each target's time (0 on
    padding), which :func:`loss_of` compares with the items' first appearances."""

    inputs: np.ndarray
    targets: np.ndarray
    weight: np.ndarray
    val_inputs: np.ndarray
    val_targets: np.ndarray
    target_times: np.ndarray | None = None

    @property
    def positions(self) -> int:
        return int(self.weight.sum())


def history_of(max_len: int, history: int | None) -> int:
    """Training targets kept per user: ``history``, never fewer than the ``max_len`` the model
    reads (None: ``max_len``)."""
    return max_len if history is None else max(int(history), max_len)


def make_examples(seqs: Sequence[Sequence[int]], max_len: int, first_new: Sequence[int] | None = None,
                  validation: bool = True, history: int | None = None,
                  times: Sequence[Sequence[int]] | None = None) -> Examples:
    """Split each sequence into its training part and (``validation``, 3 items or more) its last item.

    The training part's newest ``history`` targets (at least ``max_len``; None: ``max_len``) are
    cut into windows of ``max_len`` from the newest back, each a row whose inputs are the items
    just before its targets: the model reads ``max_len`` items, yet learns from every one of a
    long history instead of only its newest ``max_len``. ``first_new`` (per sequence, an index
    into it): only targets at or after it count (warm start on the new days only). ``times`` (per
    sequence, one integer time per item, e.g. epoch seconds): kept per target as ``target_times``."""
    history = history_of(max_len, history)
    tr_in, tr_out, tr_w, tr_t, va_in, va_out = [], [], [], [], [], []
    for r, s in enumerate(seqs):
        s = [int(i) for i in s]
        if len(s) < 2:
            continue
        when = None if times is None else [int(x) for x in times[r]]
        if when is not None and len(when) != len(s):
            raise ValueError(f"seqrec: sequence {r} has {len(s)} items but {len(when)} times")
        held = validation and len(s) >= 3
        train = s[:-1] if held else s
        if held:
            va_in.append(train)
            va_out.append(s[-1])
        cut = 0 if first_new is None else int(first_new[r])
        oldest = max(1, len(train) - history)          # index in s of the oldest target kept
        end = len(train)
        while end > oldest:
            start = max(oldest, end - max_len)          # index in s of this window's first target
            tr_in.append(train[start - 1:end - 1]), tr_out.append(train[start:end])
            tr_w.append([1.0 if j >= cut else 0.0 for j in range(start, end)])
            if when is not None:
                tr_t.append(when[start:end])
            end = start
    weight = np.zeros((len(tr_w), max_len), dtype=np.float32)
    for r, w in enumerate(tr_w):
        if w:
            weight[r, max_len - len(w):] = w
    keep = weight.sum(axis=1) > 0
    target_times = None if times is None else left_pad(tr_t, max_len)[keep]
    return Examples(left_pad(tr_in, max_len)[keep], left_pad(tr_out, max_len)[keep], weight[keep],
                    left_pad(va_in, max_len), np.asarray(va_out, dtype=np.int64), target_times)


# ----------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained (``seqrec`` in conf)."""

    epochs: int = 30
    patience: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    negatives: int = 256
    full_softmax_max_items: int = 20000
    mask_seen: bool = True
    seed: int = 5
    validation_users: int = 5000
    min_epochs: int = 1
    min_steps_per_epoch: int = 1
    history: int = 0                  # targets per user trained on (make_examples); 0: max_len
    mask_unavailable: bool = True     # no negative before the item first appeared (with times: loss_of)


def trimmed(weight: np.ndarray) -> int:
    """The first column any row of a left-padded batch uses (the columns before it are padding in
    every row: dropping them changes nothing, see the module docstring, and saves the work)."""
    used = np.flatnonzero(weight.any(axis=0))
    return int(used[0]) if len(used) else weight.shape[1] - 1


def seen_mask(inputs, n_items: int, keep=None):
    """Whether each item was among ``inputs[.., :t + 1]`` (padding counts as seen): ``(batch, len,
    n_items + 1)`` bool, or ``(m, n_items + 1)`` for the positions of the bool ``keep`` ``(batch,
    len)``, in ``tensor[keep]`` order. From each item's first position in the row, one comparison
    per position and item (a running maximum over the positions costs several times as much)."""
    torch = _torch()
    b, n = inputs.shape
    # positions in the narrowest type that holds them (less to gather); CUDA's atomic minimum is native for int32
    small = torch.int16 if n < 2 ** 15 and inputs.device.type == "cpu" else torch.int32
    at = torch.arange(n, dtype=small, device=inputs.device)
    first = torch.full((b, n_items + 1), n, dtype=small, device=inputs.device)
    first.scatter_reduce_(1, inputs, at.expand(b, n), reduce="amin")
    if keep is None:
        seen = first.unsqueeze(1) <= at.view(1, n, 1)
    else:
        rows, cols = keep.nonzero(as_tuple=True)
        seen = first[rows] <= cols.to(small).unsqueeze(1)
    seen[..., PAD] = True
    return seen


def loss_of(model, inputs, targets, weight, settings: TrainSettings, generator=None, times=None, available=None):
    """Mean cross-entropy of the weighted positions (full catalogue, or sampled softmax).

    ``times`` ``(batch, len)`` (each target's time) and ``available`` ``(n_items + 1,)`` (each
    item's first appearance, same unit): when both are given, an item that had not appeared yet
    at a target's time is left out of that target's softmax (it could not have been chosen)."""
    torch = _torch()
    net = model.module if hasattr(model, "module") else model
    n_items = net.config.n_items
    hidden = model(inputs)                                             # (b, n, d)
    keep = weight > 0
    h, y = hidden[keep], targets[keep]                                # (m, d), (m,)
    w = weight[keep]
    at = None if times is None or available is None else times[keep].unsqueeze(1)    # (m, 1)
    if at is not None and not bool((available > at.min()).any()):
        at = None                           # every item had appeared by the batch's first target
    rows = torch.arange(len(y), device=y.device)
    if n_items <= settings.full_softmax_max_items:
        logits = h @ net.items().T                                     # (m, I + 1)
        if settings.mask_seen:
            mask = seen_mask(inputs, n_items, keep)                    # padding included
        else:
            mask = torch.zeros_like(logits, dtype=torch.bool)
            mask[:, PAD] = True
        if at is not None:
            mask |= available.unsqueeze(0) > at
        mask[rows, y] = False
        logits = logits.masked_fill(mask, float("-inf"))
        ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    else:
        neg = torch.randint(1, n_items + 1, (settings.negatives,), generator=generator).to(y.device)
        pos_logit = (h * net.items(y)).sum(-1, keepdim=True)
        neg_logit = h @ net.items(neg).T
        out = neg.unsqueeze(0) == y.unsqueeze(1)
        if at is not None:
            out |= available[neg].unsqueeze(0) > at
        neg_logit = neg_logit.masked_fill(out, float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        ce = torch.nn.functional.cross_entropy(logits, torch.zeros_like(y), reduction="none")
    return (ce * w).sum() / w.sum().clamp(min=1.0)


def rank_metrics(model, inputs: np.ndarray, targets: np.ndarray, mask_seen: bool, k: int = 10,
                 batch: int = 512) -> dict:
    """Sums of NDCG@k and hits@k of ``targets`` in a full ranking of the catalogue (seen items
    excluded when ``mask_seen``), and the count: ``{"ndcg": ..., "hits": ..., "n": ...}``."""
    torch = _torch()
    net = model.module if hasattr(model, "module") else model
    was = net.training
    net.eval()
    ndcg = hits = 0.0
    device = net.pos.weight.device
    with torch.no_grad():
        items = net.items()
        for s in range(0, len(targets), batch):
            x = torch.as_tensor(inputs[s:s + batch][:, trimmed(inputs[s:s + batch] != PAD):], device=device)
            y = torch.as_tensor(targets[s:s + batch], device=device)
            scores = net(x)[:, -1, :] @ items.T
            scores[:, PAD] = float("-inf")
            if mask_seen:
                seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, x, True)
                seen[torch.arange(len(y), device=device), y] = False
                scores = scores.masked_fill(seen, float("-inf"))
            target = scores.gather(1, y.unsqueeze(1))
            rank = (scores > target).sum(dim=1)                        # 0 = first
            hit = rank < k
            hits += float(hit.sum())
            ndcg += float((hit.float() / torch.log2(rank.float() + 2.0)).sum())
    net.train(was)
    return {"ndcg": ndcg, "hits": hits, "n": float(len(targets))}


@dataclass
class TrainResult:
    """What :func:`train` did."""

    epochs: int = 0
    best_epoch: int = 0
    val_ndcg: float | None = None
    val_recall: float | None = None
    history: list = field(default_factory=list)
    positions: int = 0
    seconds: float = 0.0


def train(model, examples: Examples, settings: TrainSettings, reduce: Callable[..., dict] | None = None,
          rank: int = 0, world: int = 1, log: Callable[[str], None] | None = None,
          available: np.ndarray | None = None) -> TrainResult:
    """Train ``model`` (possibly a DDP wrapper) on ``examples``; keeps the best epoch's weights.

    ``available`` (per vocabulary index, each item's first appearance in the unit of the
    examples' ``target_times``): with ``settings.mask_unavailable`` and the examples' times, an
    item is no target's negative before it first appeared (:func:`loss_of`).

    ``reduce(values, op)`` sums (``op="sum"``) or takes the maximum (``"max"``) of a dict of floats
    over processes (DDP: an all-reduce); each process passes its own shard of the examples and runs
    the same number of steps (shorter shards wrap around).
    """
    import time

    torch = _torch()
    net = model.module if hasattr(model, "module") else model
    reduce = reduce or (lambda d, op="sum": d)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed * 1009 + rank)
    gen = torch.Generator().manual_seed(settings.seed * 7919 + rank)
    n = len(examples.targets)
    if n == 0:
        raise ValueError("seqrec: no training positions in this shard (every process needs some)")
    # every process runs the same number of steps (DDP all-reduces each one): the longest shard's,
    # and at least min_steps_per_epoch (a small sample is gone over several times per epoch)
    steps = int(reduce({"steps": float(max(math.ceil(n / settings.batch_size), settings.min_steps_per_epoch))},
                       "max")["steps"])
    val_in, val_out = examples.val_inputs, examples.val_targets
    cap = max(1, settings.validation_users // world)
    if len(val_out) > cap:                    # a seeded sample of the validation users
        pick = np.sort(np.random.default_rng(settings.seed + rank).choice(len(val_out), cap, replace=False))
        val_in, val_out = val_in[pick], val_out[pick]
    val_n = int(reduce({"n": float(len(val_out))})["n"])
    result = TrainResult(positions=int(reduce({"p": float(examples.positions)})["p"]))
    best_state, best, bad = None, -1.0, 0
    t0 = time.monotonic()
    device = net.pos.weight.device
    timed = settings.mask_unavailable and available is not None and examples.target_times is not None
    avail = torch.as_tensor(np.asarray(available, dtype=np.int64), device=device) if timed else None
    for epoch in range(1, settings.epochs + 1):
        model.train()
        size = min(settings.batch_size, n)
        order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * size / n))])
        total = 0.0
        for step in range(steps):
            idx = order[step * size:(step + 1) * size]
            cols = trimmed(examples.weight[idx])
            x = torch.as_tensor(examples.inputs[idx][:, cols:], device=device)
            y = torch.as_tensor(examples.targets[idx][:, cols:], device=device)
            w = torch.as_tensor(examples.weight[idx][:, cols:], device=device)
            tt = torch.as_tensor(examples.target_times[idx][:, cols:], device=device) if timed else None
            loss = loss_of(model, x, y, w, settings, gen, tt, avail)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        mean_loss = reduce({"loss": total / max(steps, 1)})["loss"] / world
        entry = {"epoch": epoch, "loss": round(mean_loss, 5)}
        if val_n:
            m = reduce(rank_metrics(model, val_in, val_out, settings.mask_seen))
            entry.update(val_ndcg=m["ndcg"] / m["n"], val_recall=m["hits"] / m["n"])
        result.history.append(entry)
        result.epochs = epoch
        if log:
            log(f"seqrec epoch {epoch}: {entry}")
        score = entry.get("val_ndcg", -mean_loss)
        if score > best + 1e-9 or best_state is None:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            result.best_epoch, result.val_ndcg, result.val_recall = epoch, entry.get("val_ndcg"), entry.get("val_recall")
        else:
            bad += 1
            if bad >= settings.patience and epoch >= settings.min_epochs:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    result.seconds = time.monotonic() - t0
    return result


# ------------------------------------------------------------------------------- checkpoints
MODEL_FILE, CONFIG_FILE, ITEMS_FILE = "model.pt", "config.json", "items.json"


def _fs(path: str):
    """``(pyarrow file system, path in it)`` for a local path, ``file:`` URI or object-store URI."""
    from pyarrow import fs

    if path.startswith("file:"):
        path = "/" + path[len("file:"):].lstrip("/")
    for hadoop in ("s3a://", "s3n://"):           # Hadoop's S3 schemes are pyarrow's s3://
        if path.startswith(hadoop):
            path = "s3://" + path[len(hadoop):]
    if "://" in path:
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), os.path.abspath(path)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file (local or object store), creating its folder."""
    filesystem, p = _fs(path)
    filesystem.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(p) as out:
        out.write(data)


def read_bytes(path: str) -> bytes:
    """Read a whole file (local or object store)."""
    filesystem, p = _fs(path)
    with filesystem.open_input_stream(p) as src:
        return src.read()


def exists(path: str) -> bool:
    """Whether a file exists (local or object store)."""
    from pyarrow import fs

    filesystem, p = _fs(path)
    return filesystem.get_file_info(p).type != fs.FileType.NotFound


def save(folder: str, model, item_ids: Sequence[str], extra: dict | None = None) -> None:
    """Write ``model.pt``, ``config.json`` (architecture + ``extra``) and ``items.json`` into ``folder``
    (config and vocabulary first: a folder with ``model.pt`` is complete)."""
    import io

    torch = _torch()
    net = model.module if hasattr(model, "module") else model
    folder = folder.rstrip("/")
    meta = {"config": asdict(net.config), **(extra or {})}
    write_bytes(f"{folder}/{CONFIG_FILE}", json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
    write_bytes(f"{folder}/{ITEMS_FILE}", json.dumps(list(item_ids)).encode("utf-8"))
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    write_bytes(f"{folder}/{MODEL_FILE}", buf.getvalue())


def load(folder: str, device: str = "cpu"):
    """``(model, item_ids, meta)`` from a folder written by :func:`save` (model in eval mode)."""
    import io

    torch = _torch()
    folder = folder.rstrip("/")
    meta = json.loads(read_bytes(f"{folder}/{CONFIG_FILE}"))
    item_ids = json.loads(read_bytes(f"{folder}/{ITEMS_FILE}"))
    config = SeqRecConfig(**meta["config"])
    state = torch.load(io.BytesIO(read_bytes(f"{folder}/{MODEL_FILE}")), map_location="cpu", weights_only=True)
    lm = np.zeros((config.n_items + 1, config.lm_dim), dtype=np.float32) if config.use_text else None
    model = build_model(config, lm, state["id_index"].numpy() if "id_index" in state else None)
    model.load_state_dict(state)
    return model.to(device).eval(), item_ids, meta


def warm_state(old_state: dict, old_items: Sequence[str], new_model, new_items: Sequence[str]) -> dict:
    """The state dict of ``new_model`` with every weight taken from ``old_state`` where the shapes
    agree, and the ID embedding rows of items both vocabularies hold carried to their new index (new
    items keep their fresh rows)."""
    torch = _torch()
    state = new_model.state_dict()
    for key, value in old_state.items():
        if key in state and state[key].shape == value.shape and key not in ("lm", "id_index", "ids.weight"):
            state[key] = value.clone()
    if "ids.weight" in old_state and "ids.weight" in state:
        cfg = new_model.config
        if cfg.id_buckets > 0 and state["ids.weight"].shape == old_state["ids.weight"].shape:
            state["ids.weight"] = old_state["ids.weight"].clone()       # hashed rows do not move
        elif cfg.id_buckets == 0:
            where = {item: i + 1 for i, item in enumerate(old_items)}
            new_rows = torch.tensor([i + 1 for i, item in enumerate(new_items) if item in where], dtype=torch.long)
            old_rows = torch.tensor([where[item] for item in new_items if item in where], dtype=torch.long)
            if len(new_rows):
                state["ids.weight"][new_rows] = old_state["ids.weight"][old_rows]
    return state


# ----------------------------------------------------------------------------------- serving
def score_users(model, seqs: np.ndarray, batch: int = 1024, device=None, half: bool = False
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(vectors float32 (b, dim), anchor column (b,))`` per batch of left-padded ``seqs``."""
    torch = _torch()
    with torch.no_grad():
        for s in range(0, len(seqs), batch):
            x = torch.as_tensor(seqs[s:s + batch], device=device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=half):
                vec, anchor = model.user_vectors(x)
            yield vec.float().cpu().numpy(), anchor.cpu().numpy()


def item_matrix(model) -> np.ndarray:
    """The item output matrix ``(n_items, dim)`` (vocabulary order, padding row dropped)."""
    torch = _torch()
    with torch.no_grad():
        return model.items().float().cpu().numpy()[1:]


def loaded(folder: str, device_preference: str = "auto", version: str = ""):
    """``(model, item_ids, device, half)`` for a checkpoint, loaded once per Python worker: on the
    task's GPU in half precision when there is one, else on the CPU. ``version`` tells two
    checkpoints written to the same folder apart (a re-run of a date), which the reused Python
    workers would otherwise mistake for the one they hold."""
    from udfs.device import cached, pick_device, set_torch_threads

    set_torch_threads()

    def factory():
        device = pick_device(device_preference)
        model, item_ids, _ = load(folder, str(device))
        return model, item_ids, device, device.type == "cuda"

    return cached(("seqrec", folder, device_preference, version), factory)


def user_vector_frames(frames, folder: str, device_preference: str = "auto", batch: int = 1024, version: str = ""):
    """``mapInPandas`` body: ``(user_id, items)`` (vocabulary indices, oldest first) ->
    ``(user_id, embedding, anchor)``, ``anchor`` the index into ``items`` of the position the
    newest one attends to most."""
    import pandas as pd

    model, _, device, half = loaded(folder, device_preference, version)
    n = model.config.max_len
    for frame in frames:
        if frame.empty:
            continue
        seqs = [list(s)[-n:] for s in frame["items"]]
        padded = left_pad(seqs, n)
        vecs, anchors = [], []
        for v, a in score_users(model, padded, batch, device, half):
            vecs.append(v), anchors.append(a)
        vec = np.concatenate(vecs)
        col = np.concatenate(anchors)
        lengths = np.asarray([len(s) for s in frame["items"]])
        kept = np.asarray([len(s) for s in seqs])
        # column of the padded window -> index into the user's own (untrimmed) sequence
        anchor = col - (n - kept) + (lengths - kept)
        yield pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "embedding": list(vec.astype(np.float32)),
                            "anchor": anchor.astype(np.int32)})


def item_vector_frames(frames, folder: str, device_preference: str = "auto", version: str = ""):
    """``mapInPandas`` body: ``(item_id, idx)`` -> ``(item_id, embedding)``, the item output vectors."""
    import pandas as pd

    model, _, _, _ = loaded(folder, device_preference, version)
    matrix = item_matrix(model)
    for frame in frames:
        if frame.empty:
            continue
        rows = matrix[frame["idx"].to_numpy() - 1]
        yield pd.DataFrame({"item_id": frame["item_id"].to_numpy(), "embedding": list(rows.astype(np.float32))})
