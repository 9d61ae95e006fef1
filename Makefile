# Everything installs into a project venv; the second run of any target reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 YOLO_OFFLINE=1
# PREFECT_HOME: flows/serve.py and djepa_t2i/env.py choose it (tests get their own under .state/test)
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# no global PREFECT_API_URL: in-process flow runs (tests, make demo) use an ephemeral API;
# flows/serve.py points its own processes at the server it starts.

.PHONY: setup test test-fast demo demo-server serve stop bench clean rehearse

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, so nothing else can resolve a different build
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# two workers, a whole file each (module fixtures such as the Prefect stack are built once); the
# slow files start first (tests/conftest.py) and the default by-size reordering would undo that
XDIST := -n 2 --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PY) -m pytest tests $(XDIST)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow" $(XDIST)

demo: $(STAMP)
	$(VENV)/bin/t2i demo --out runs/demo

# configs/phase1.yaml + phase2.yaml end to end with every production backend, on tiny weights in
# the published formats (configs/rehearsal.yaml: sizes and paths only); tests/test_rehearsal.py runs it in CI
rehearse: $(STAMP)
	$(VENV)/bin/t2i rehearse --out runs/rehearse

# Prefect server on 127.0.0.1:4200 plus a process worker for the deployments in prefect.yaml.
serve: $(STAMP)
	$(VENV)/bin/t2i serve start

stop: $(STAMP)
	$(VENV)/bin/t2i serve stop

demo-server: $(STAMP)
	$(VENV)/bin/t2i serve demo --out runs/demo-server

bench: $(STAMP)
	$(PY) bench/curate_throughput.py

clean:
	rm -rf runs .state .pytest_cache
