# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with
# Python 3.10+, Java 17+ and network access to the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JARS := $(VENV)/.jars-resolved

.PHONY: install jars demo test nightly clean-demo

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

test: $(JARS)
	$(BIN)/python -m pytest -q tests

clean-demo:
	rm -rf demo-output
