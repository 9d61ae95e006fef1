# Everything installs into a project venv; the second run of any target reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 YOLO_OFFLINE=1
# PREFECT_HOME: djepa_t2i/serve and djepa_t2i/env.py choose it (tests get their own under .state/test)
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# no global PREFECT_API_URL: in-process flow runs (tests, make demo) use an ephemeral API;
# t2i serve (djepa_t2i/serve) points its own processes at the server it starts.

.PHONY: setup lock lint test test-fast demo demo-post demo-server serve stop bench clean rehearse

setup: $(STAMP)

# requirements.lock pins the whole tree (torch included, so nothing can resolve another build);
# as a constraints file it also refuses a lock that disagrees with pyproject.toml's pins.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# After a pin changes in pyproject.toml: the whole tree again, for CPython 3.11 on Linux x86_64
# (uv keeps every pin the old lock has unless the change needs another).
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv==0.13.9
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--index-strategy unsafe-best-match --custom-compile-command "make lock" -o requirements.lock

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# two workers, a whole file each (module fixtures such as the Prefect stack are built once); the
# slow files start first (tests/conftest.py) and the default by-size reordering would undo that
XDIST := -n 2 --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PY) -m pytest tests $(XDIST)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow" $(XDIST)

demo: $(STAMP)
	$(VENV)/bin/t2i demo --out runs/demo

# after make demo: SFT on a composition tier, then GRPO, from its latest phase-2 checkpoint
# (flows/demo_post.py, configs/demo_post.yaml); writes runs/demo/post-train/
demo-post: $(STAMP)
	$(VENV)/bin/t2i demo-post --out runs/demo

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
