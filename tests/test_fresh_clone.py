"""A fresh clone (records committed, no checkpoints) computes nothing and stays clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every stored setup the quick profile's chapters ask for; a data spec that cannot load, so
# that any attempt to train fails loudly instead of quietly recomputing.
COMPUTE = """
import sys
from lth_book.profiles import ensure_results
for pruner in ("lamp", "magnitude", "random"):
    df = ensure_results("quick", results="results", pruner=pruner, device="cpu",
                        data="/nonexistent/cifar10.tar.gz")
    print(pruner, len(df))
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_fresh_clone_computes_nothing_and_stays_clean(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    if not (clone / "results" / "lenet5").is_dir():
        pytest.skip("no committed results")
    env = {**os.environ, "PYTHONPATH": f"{clone}{os.pathsep}{clone / 'book'}"}
    done = subprocess.run([sys.executable, "-c", COMPUTE], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lamp" in done.stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status


def _cell_with(nb, text: str) -> str:
    return next(c.source for c in nb.cells if c.cell_type == "code" and text in c.source)


def test_own_model_chapter_reads_its_committed_search_without_data(monkeypatch):
    """The own-model chapter under the quick profile, from the committed records alone: it
    neither loads data nor searches (so the published book builds where the data are not
    the ones its records came from); ``stored_search`` refuses another setup and leaves a
    missing run to the search."""
    import nbformat

    import lth_core
    import lth_core.data
    from lth_book.profiles import get_profile, stored_search
    from lth_core.config import SearchConfig
    from lth_core.store import StoreError

    results = ROOT / "results"
    if not (results / "own_model" / "smallnet").is_dir():
        pytest.skip("no committed own-model records")

    def refuse(*args, **kwargs):
        raise AssertionError("the chapter loaded data or searched")

    monkeypatch.setattr(lth_core, "ticket_search", refuse)
    monkeypatch.setattr(lth_core.data, "load_data", refuse)
    nb = nbformat.read(ROOT / "book" / "own_model.ipynb", as_version=4)
    pg = SimpleNamespace(profile=get_profile("quick"), results_dir=results,
                         data_spec="/nonexistent/cifar10.tar.gz",
                         prune_rate=SearchConfig.prune_rate)
    ns = dict(pg=pg, stages=None, prune_rate=None, device="cpu")
    exec(_cell_with(nb, "class SmallNet"), ns)
    exec(_cell_with(nb, "ticket_search("), ns)
    records = ns["records"]
    assert sorted(records["stage"]) == [0, 1, 2] and set(records["run"]) == {0}

    cfg = ns["cfg"]
    assert stored_search(results / "own_model", "smallnet", cfg, runs=2) is None
    assert stored_search(results / "own_model", "no-such-search", cfg, runs=1) is None
    other = replace(cfg, train=replace(cfg.train, lr=0.01))
    with pytest.raises(StoreError, match="another setup"):
        stored_search(results / "own_model", "smallnet", other, runs=1)
