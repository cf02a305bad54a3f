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

.PHONY: venv test lint book width readme lab

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
# stored records in results/ (computes nothing; lth_book.readme). Commit new records first:
# it refuses while results/ holds files git does not track (--uncommitted overrides).
readme: venv
	$(PY) -m lth_book.readme README.md $(if $(RESULTS),--results $(RESULTS))

# JupyterLab on the chapters (book/), from the project's venv, on 127.0.0.1 only, no browser
# opened (open the URL with the token it prints). The venv's ipykernel is registered in the
# venv itself (--sys-prefix: nothing outside .venv changes) as LAB_KERNEL, so other Jupyter
# front ends find the project's environment by name. LAB_PORT: the first port tried (the
# next free one if taken); LAB_ARGS: more server options. As root (containers) the server
# needs --allow-root, added here.
LAB_PORT ?= 8888
LAB_KERNEL ?= lottery-book
LAB_ARGS ?=
lab: venv
	$(PY) -m ipykernel install --sys-prefix --name $(LAB_KERNEL) --display-name "$(LAB_KERNEL)"
	$(PY) -m jupyterlab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		--ServerApp.root_dir="$(CURDIR)/book" $(if $(filter 0,$(shell id -u)),--allow-root) \
		$(LAB_ARGS)
