# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with
# Python 3.10+, Java 17+ and network access to the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JARS := $(VENV)/.jars-resolved

AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: install jars demo test pyfiles deploy-check clean-demo airflow-venv

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Resolve the Delta jars once (Ivy: ~/.m2 first, then Maven Central; falls back to mvn).
$(JARS): $(STAMP)
	$(BIN)/python -m jobs.common.session --resolve
	touch $(JARS)

jars: $(JARS)

demo: $(JARS)
	$(BIN)/recjobs demo

# Airflow in a virtualenv of its own (its pins clash with the jobs' packages); the DAG test uses it.
$(AIRFLOW_STAMP): deploy/airflow-requirements.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install -r deploy/airflow-requirements.txt
	touch $(AIRFLOW_STAMP)

airflow-venv: $(AIRFLOW_STAMP)

# Two pytest-xdist workers, each with its own SparkSession; a worker takes whole modules, and
# the modules of the shape nights together (tests/conftest.py).
TEST_WORKERS ?= 2
test: $(JARS) $(AIRFLOW_STAMP)
	RECJOBS_AIRFLOW_PYTHON=$(AIRFLOW_VENV)/bin/python $(BIN)/python -m pytest -q -n $(TEST_WORKERS) tests

# The --py-files zip for spark-submit (deploy/spark-submit.sh builds it too).
pyfiles: $(STAMP)
	$(BIN)/python -m jobs.package --out dist/recjobs-pyfiles.zip

# spark-submit of the nightly through deploy/spark-submit.sh on local-cluster[2,1,2048]: two
# executor JVMs apart from the driver, so nothing may depend on driver-local state.
DEPLOY_CHECK := build/deploy-check
deploy-check: $(JARS)
	rm -rf $(DEPLOY_CHECK)
	$(BIN)/recjobs sample-data --out $(DEPLOY_CHECK)/sample --users 40 --items 40 --days 4 --seed 3
	RECJOBS_SUBMIT_ARGS="--master local-cluster[2,1,2048]" deploy/spark-submit.sh --date 2026-06-30 \
	  --conf conf/local.yaml --set lake.root=$(DEPLOY_CHECK)/lake \
	  --set input.events_path=$(DEPLOY_CHECK)/sample/events --set input.items_path=$(DEPLOY_CHECK)/sample/items \
	  --set clean.window_days=4 --set dq.docs_dir=$(DEPLOY_CHECK)/reports/dq --set report.dir=$(DEPLOY_CHECK)/reports
	test -s $(DEPLOY_CHECK)/reports/2026-06-30/report.json

clean-demo:
	rm -rf demo-output
