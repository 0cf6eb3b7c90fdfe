"""One training step of the sequence model as the catalogue grows: the product's step against the
same step with the seen-item mask built by a running maximum over the positions (the mask the
model was first trained with), and the product's step with each target's time and the items' first
appearances (``seqrec.mask_unavailable``, the default), side by side in one process, one torch thread.

    .venv/bin/python benchmarks/seqrec_step.py [--items 500 3700 10000] [--max-len 50] [--steps 6]

Before anything is timed, both masks are checked to be equal on a random batch at each catalogue size. A MovieLens-1M-sized
catalogue is about 3,700 films; with ``seqrec.mask_seen`` (the default) every position of every
row needs a mask over the whole catalogue, so the mask's cost grows with rows x positions x
items, as the full softmax does.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from udfs import seqrec as sq  # noqa: E402


def running_max_mask(inputs, n_items: int):
    """The reference: one-hot rows and a running maximum over the positions."""
    import torch

    b, n = inputs.shape
    hot = torch.zeros(b, n, n_items + 1, dtype=torch.uint8, device=inputs.device)
    hot.scatter_(2, inputs.unsqueeze(-1), 1)
    seen = torch.cummax(hot, dim=1).values.bool()
    seen[:, :, sq.PAD] = True
    return seen


def timed_steps(items: int, max_len: int, steps: int, reference: bool, timed: bool = False) -> float:
    """Seconds per optimizer step (the mean of ``steps`` after one warm-up step); ``timed``: with
    each target's time and the items' first appearances (``seqrec.mask_unavailable``)."""
    import torch

    rng = np.random.default_rng(0)
    lm = rng.normal(size=(items + 1, 384)).astype(np.float32)
    lm[0] = 0
    torch.manual_seed(0)
    model = sq.build_model(sq.SeqRecConfig(n_items=items, lm_dim=384, max_len=max_len), lm).train()
    seqs = [list(rng.integers(1, items + 1, size=int(rng.integers(max_len, 4 * max_len)))) for _ in range(400)]
    ex = sq.make_examples(seqs, max_len, history=4 * max_len, times=[list(range(1, len(s) + 1)) for s in seqs])
    available = torch.as_tensor(rng.integers(0, 4 * max_len, size=items + 1))
    settings = sq.TrainSettings(batch_size=128, mask_seen=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    original = sq.seen_mask
    if reference:
        sq.seen_mask = lambda inputs, n, keep=None: (running_max_mask(inputs, n) if keep is None
                                                     else running_max_mask(inputs, n)[keep])
    try:
        took = []
        for step in range(steps + 1):
            idx = rng.choice(len(ex.targets), 128, replace=False)
            x, y, w, t = (torch.as_tensor(a[idx]) for a in (ex.inputs, ex.targets, ex.weight, ex.target_times))
            t0 = time.perf_counter()
            loss = sq.loss_of(model, x, y, w, settings, None, *((t, available) if timed else (None, None)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step:
                took.append(time.perf_counter() - t0)
        return float(np.mean(took))
    finally:
        sq.seen_mask = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, nargs="+", default=[500, 3700, 10000])
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    for n_items in args.items:      # the masks agree before anything is timed
        x = torch.as_tensor(rng.integers(0, n_items + 1, size=(64, args.max_len)))
        keep = torch.as_tensor(rng.random((64, args.max_len)) < 0.7)
        if not torch.equal(sq.seen_mask(x, n_items, keep), running_max_mask(x, n_items)[keep]):
            raise SystemExit(f"the masks differ at {n_items} items")
    print(f"one training step, batch 128 x {args.max_len} positions, default architecture, 1 thread")
    print("| items | running-max mask (s / step) | product without first appearances (s / step) | speed-up "
          "| product (s / step, with mask_unavailable) |")
    print("| --- | --- | --- | --- | --- |")
    for n_items in args.items:
        before = timed_steps(n_items, args.max_len, args.steps, reference=True)
        after = timed_steps(n_items, args.max_len, args.steps, reference=False)
        product = timed_steps(n_items, args.max_len, args.steps, reference=False, timed=True)
        print(f"| {n_items:,} | {before:.3f} | {after:.3f} | {before / after:.2f}x | {product:.3f} |", flush=True)


if __name__ == "__main__":
    main()
