# Two commands on a fresh machine: `make book` (the main job) and `make test`.
# Each creates or reuses the project's virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Book profile: smoke (seconds, synthetic data), quick (real CIFAR-10, 2-core CPU budget),
# paper (the paper's protocol, for GPUs). Empty PROFILE, DATA and RESULTS: the defaults of
# book/lth_book/profiles.py (profile quick; its data: the JPEG copy in ../shared/data when
# present, else cifar10; results/, or _build/results-smoke for smoke).
PROFILE ?=
DATA ?=
RESULTS ?=
DEVICE ?= auto
OUT ?= _build

.PHONY: venv test lint book width readme

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
	$(PY) book/build.py $(if $(PROFILE),--profile $(PROFILE)) \
		$(if $(RESULTS),--results $(RESULTS)) --device $(DEVICE) --out $(OUT) \
		$(if $(DATA),--data $(DATA))

# The width study (book/width.ipynb): RUNS complete runs of each LeNet-5 width, or of one
# (WIDTH=lenet5-w0.25), into results/; continues from the stored records, trains only what is
# missing. Empty RUNS: the CPU study's 8 (lth_book.width.CPU_RUNS). On a GPU: make width RUNS=50.
RUNS ?=
WIDTH ?=
width: venv
	$(PY) -m lth_book.width $(if $(RUNS),--runs $(RUNS)) $(if $(WIDTH),--width $(WIDTH)) \
		--device $(DEVICE) $(if $(RESULTS),--results $(RESULTS)) $(if $(DATA),--data $(DATA))

# README.md's generated blocks (the width study, the trajectory scale), rewritten from the
# stored records in results/ (computes nothing; lth_book.readme). Run it after new records.
readme: venv
	$(PY) -m lth_book.readme README.md $(if $(RESULTS),--results $(RESULTS))
