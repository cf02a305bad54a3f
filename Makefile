# Two commands on a fresh machine: `make book` (the main job) and `make test`.
# Each creates or reuses the project's virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := ../shared/data/cifar10-jpeg.tar.gz
# Book profile: smoke (seconds, synthetic data), quick (real CIFAR-10, 2-core CPU budget),
# paper (the paper's protocol, for GPUs).
PROFILE ?= quick
# smoke runs on its own synthetic data and keeps its records out of results/
DATA ?= $(if $(filter smoke,$(PROFILE)),,$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),cifar10))
RESULTS ?= $(if $(filter smoke,$(PROFILE)),_build/results-smoke,results)
DEVICE ?= auto
OUT ?= _build

.PHONY: venv test lint book

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(PY) -m ruff check .

test: venv lint
	$(PY) -m pytest

# The executable book: papermill runs every notebook of _toc.yml into $(OUT)/book-src
# (resumable: results already in $(RESULTS) are reused), then jupyter-book renders the
# static, offline site into $(OUT)/html (open $(OUT)/html/index.html). Needs npm.
book: venv
	$(PY) book/build.py --profile $(PROFILE) --results $(RESULTS) --device $(DEVICE) \
		--out $(OUT) $(if $(DATA),--data $(DATA))
