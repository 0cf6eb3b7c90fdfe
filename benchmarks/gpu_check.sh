#!/usr/bin/env bash
# The GPU paths in one run (under 8 minutes on one GPU), one table: the encoder UDF on local
# Spark at fp16 (batch 256 and 1024), the blocked top-K against torch's own matmul on the same
# GPU, and an epoch of the sequence model with its scoring. See benchmarks/gpu_check.py.
#
#     bash benchmarks/gpu_check.sh            (from the repository root, after `make jars`)
#
# Without a GPU it says so and exits 0: the project builds and tests without one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" benchmarks/gpu_check.py "$@"
