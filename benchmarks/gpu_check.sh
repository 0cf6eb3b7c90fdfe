#!/usr/bin/env bash
# The GPU paths in one run (a few minutes): the encoder at fp16, the blocked top-K against torch's
# own matmul on the same GPU, and the sequence model's training and scoring. Prints one table.
#
#     bash benchmarks/gpu_check.sh            (from the repository root, after `make jars`)
#
# Without a GPU it says so and exits 0: the project builds and tests without one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device here; nothing to measure"
  exit 0
fi
"$PY" - <<'PY'
import time

import numpy as np
import torch

from udfs.text_encoder import EncoderSettings, get_encoder
from udfs.topk import block_topk

name = torch.cuda.get_device_name(0)
rows = []
# 1. the encoder (all-MiniLM-L6-v2, packaged) at fp16, batches sorted by token length
words = "trail running shoe lightweight waterproof kitchen knife stainless steel camping tent novel".split()
rng = np.random.default_rng(0)
texts = [" ".join(rng.choice(words, size=int(rng.integers(4, 16)))) for _ in range(50_000)]
for batch in (256, 1024):
    enc = get_encoder(EncoderSettings(batch_size=batch, device="cuda", half_precision=True))
    enc.encode(texts[:2000])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    enc.encode(texts)
    torch.cuda.synchronize()
    rows.append((f"encoder fp16, batch {batch}", f"{len(texts) / (time.perf_counter() - t0):,.0f} texts/s"))
# 2. blocked top-K against a plain matmul of the same shapes on the same GPU
users = rng.normal(size=(200_000, 384)).astype(np.float32)
items = rng.normal(size=(100_000, 384)).astype(np.float32)
block_topk(users[:4096], items, 100, block_rows=4096, device="cuda")
torch.cuda.synchronize()
t0 = time.perf_counter()
block_topk(users, items, 100, block_rows=8192, device="cuda", ordered=False)
torch.cuda.synchronize()
topk_s = time.perf_counter() - t0
u, i = torch.as_tensor(users, device="cuda"), torch.as_tensor(items, device="cuda")
torch.cuda.synchronize()
t0 = time.perf_counter()
for s in range(0, len(users), 8192):
    (u[s:s + 8192] @ i.T).max(dim=1)
torch.cuda.synchronize()
mm_s = time.perf_counter() - t0
flops = 2.0 * users.shape[0] * items.shape[0] * 384
rows.append(("top-100, 200k users x 100k items (incl. host copies)", f"{flops / topk_s / 1e12:.1f} TFLOP/s"))
rows.append(("torch matmul, same shapes (on device)", f"{flops / mm_s / 1e12:.1f} TFLOP/s"))
rows.append(("top-K / matmul", f"{mm_s / topk_s:.2f}x"))
print(f"\nGPU: {name}\n\n| check | result |\n| --- | --- |")
for check, result in rows:
    print(f"| {check} | {result} |")
PY
# 3. the sequence model: training examples/s and users scored/s, CPU (2 processes) and GPU rows
"$PY" benchmarks/seqrec.py --users 2000 --items 2000 --epochs 2
