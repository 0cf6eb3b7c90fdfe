#!/usr/bin/env bash
# Submit the recjobs nightly for one date (or one stage) with spark-submit.
#
#   deploy/spark-submit.sh --date 2026-06-30 --conf conf/cluster.yaml
#   RECJOBS_SUBMIT_ARGS="--master yarn --deploy-mode client" deploy/spark-submit.sh --date ... --conf ...
#   RECJOBS_JOB=jobs/validate.py deploy/spark-submit.sh --date ...          # one stage
#
# What it does: builds the --py-files zip of jobs/udfs/schemas/conf (python -m jobs.package),
# passes conf/spark-defaults.conf (Delta packages and SQL extensions) and conf/log4j2.properties,
# and runs jobs/nightly.py with the arguments given here (--date, --conf, --force,
# --from-stage, --set ...). Exit codes are the job's: 0 done, 2 bad config/input, 3 data-quality
# gate failed (nothing published), 1 other.
#
# Environment:
#   SPARK_SUBMIT          spark-submit to use (default: the virtualenv's, else the one on PATH)
#   PYSPARK_PYTHON        Python of driver and executors (default: the virtualenv's python).
#                         On a cluster it must exist on every node with the project's
#                         requirements installed, e.g. a packed virtualenv:
#                         RECJOBS_SUBMIT_ARGS="--archives recjobs-env.tar.gz#env" PYSPARK_PYTHON=./env/bin/python
#   RECJOBS_SUBMIT_ARGS   extra spark-submit options (--master, --deploy-mode, resources ...)
#   RECJOBS_JOB           the script to run (default jobs/nightly.py)
#
# In cluster deploy mode the driver runs remotely: ship the YAML too, e.g.
#   RECJOBS_SUBMIT_ARGS="--deploy-mode cluster --files conf/cluster.yaml" ... --conf cluster.yaml
#
# GPU executors (encoder and sentiment UDFs use the GPU Spark assigns to each task):
#   RECJOBS_SUBMIT_ARGS="$RECJOBS_SUBMIT_ARGS \
#     --conf spark.executor.resource.gpu.amount=1 \
#     --conf spark.task.resource.gpu.amount=0.25 \
#     --conf spark.executor.resource.gpu.discoveryScript=/opt/spark/examples/src/main/scripts/getGpusResources.sh \
#     --conf spark.executor.cores=4"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV_PY="$ROOT/.venv/bin/python"
PY="${PYSPARK_PYTHON:-$( [ -x "$VENV_PY" ] && echo "$VENV_PY" || command -v python3 )}"
if [ -z "${SPARK_SUBMIT:-}" ]; then
  if [ -x "$ROOT/.venv/bin/spark-submit" ]; then SPARK_SUBMIT="$ROOT/.venv/bin/spark-submit"; else SPARK_SUBMIT=spark-submit; fi
fi
JOB="${RECJOBS_JOB:-jobs/nightly.py}"
ZIP="$ROOT/dist/recjobs-pyfiles.zip"

"$PY" -m jobs.package --out "$ZIP" >/dev/null

export PYSPARK_PYTHON="$PY"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"
# shellcheck disable=SC2086  # RECJOBS_SUBMIT_ARGS is a list of options on purpose
exec "$SPARK_SUBMIT" \
  --properties-file "$ROOT/conf/spark-defaults.conf" \
  --py-files "$ZIP" \
  ${RECJOBS_SUBMIT_ARGS:-} \
  "$ROOT/$JOB" "$@"
