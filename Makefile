# Two commands on a fresh machine: `make book` (the main job) and `make test`.
# Each creates or reuses the project's virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := ../shared/data/cifar10-jpeg.tar.gz
DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),cifar10)
RESULTS ?= results
RUNS ?= 3

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

# Until the book lands: LeNet-5 ticket search on real CIFAR-10 with the default recipe
# (resumable: rerunning it finishes what is missing), then Table 2 from the results.
book: venv
	$(PY) -m lth_core search --arch lenet5 --runs $(RUNS) --stages 5 --data $(DATA) --results $(RESULTS)
	$(PY) -m lth_core report --results $(RESULTS)
