"""A fresh clone (records committed, no checkpoints) computes nothing and stays clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
