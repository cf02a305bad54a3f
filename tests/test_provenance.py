"""Provenance that traces a record to its code: a search from a dirty checkout keeps the
checkout's diff beside its records, named by the hash every record carries, and applying it
to the recorded commit rebuilds the code."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from conftest import tiny_config

from lth_core import provenance
from lth_core.engine.search import ticket_search
from lth_core.models import build
from lth_core.store import load_results


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout that lth_core's provenance reads as its own, with one commit."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    (repo / "code.py").write_text("LR = 0.05\n")
    _git(repo, "add", "code.py")
    _git(repo, "commit", "-qm", "first")
    monkeypatch.setattr(provenance, "CHECKOUT", repo)
    for f in (provenance.git_commit, provenance.code_patch):
        f.cache_clear()
    yield repo
    for f in (provenance.git_commit, provenance.code_patch):
        f.cache_clear()


def _search(results, tiny_data):
    return ticket_search(lambda: build("lenet5"), tiny_data, tiny_config(stages=1),
                         name="lenet5", runs=1, results=results, device="cpu",
                         progress=False)


def test_a_dirty_checkouts_search_keeps_its_patch_and_its_hash(checkout, tmp_path, tiny_data):
    (checkout / "code.py").write_text("LR = 0.07  # an uncommitted change\n")
    df = _search(tmp_path / "results", tiny_data)
    commit, digest = df["git_commit"].iloc[0], df["code_patch_sha256"].iloc[0]
    assert commit.endswith("+dirty") and isinstance(digest, str)
    patch = tmp_path / "results" / "lenet5" / f"code-{digest}.patch"
    assert hashlib.sha256(patch.read_bytes()).hexdigest() == digest
    # git checkout <commit> && git apply <patch> rebuilds the code that computed the record
    clean = tmp_path / "rebuilt"
    _git(tmp_path, "clone", "-q", str(checkout), str(clean))
    _git(clean, "checkout", "-q", commit.removesuffix("+dirty"))
    _git(clean, "apply", str(patch))
    assert (clean / "code.py").read_text() == (checkout / "code.py").read_text()


def test_a_clean_checkout_writes_no_patch(checkout, tmp_path, tiny_data):
    df = _search(tmp_path / "results", tiny_data)
    assert not df["git_commit"].iloc[0].endswith("+dirty")
    assert df["code_patch_sha256"].isna().all()
    assert not list((tmp_path / "results").rglob("code-*.patch"))


RESULTS = __import__("pathlib").Path(__file__).resolve().parent.parent / "results"
SAME = ["test_acc", "val_acc", "traj_len", "traj_len_2d", "epochs", "best_epoch", "history"]


def _stage0(folder):
    import json

    return {p.parent.name: json.loads(p.read_text())
            for p in sorted((RESULTS / folder / "lenet5").glob("run-*/stage-0.json"))}


def test_the_h200_sets_stage_0_is_the_h100_computation_again():
    """results/README.md: the two GPU sets' dense stages are one computation done twice
    (bit for bit), in bf16 (``amp``), not 100 replicates."""
    h100, h200 = _stage0("h100"), _stage0("h200")
    if not h100 or not h200:
        pytest.skip("the GPU sets are not in this checkout")
    assert sorted(h100) == sorted(h200) and len(h100) == 50
    for run, rec in h200.items():
        assert all(rec[k] == h100[run][k] for k in SAME), run
        assert rec["provenance"]["config"]["train"]["amp"] is True
        assert h100[run]["provenance"]["config"]["train"]["amp"] is True
        assert rec["wall_time_s"] != h100[run]["wall_time_s"]  # computed again, not copied


def test_the_records_whose_code_cannot_be_recovered_are_those_results_readme_names():
    import json

    named = {("lenet5", "c0ce9f4"), ("magnitude", "d0d48ff"), ("random", "d0d48ff"),
             ("h200", "54e9e9a"), ("h100", "unknown")}
    seen = set()
    for p in RESULTS.rglob("stage-*.json"):
        rec = json.loads(p.read_text())
        commit = rec["provenance"].get("git_commit", "unknown")
        if commit.endswith("+dirty") or commit == "unknown":
            if rec["provenance"].get("code_patch_sha256"):  # recoverable: its patch is kept
                assert (p.parent.parent / f"code-{rec['provenance']['code_patch_sha256']}"
                        ".patch").is_file()
                continue
            seen.add((p.relative_to(RESULTS).parts[0], commit[:7]))
    assert seen <= named, seen - named
    readme = (RESULTS / "README.md").read_text()
    for folder, commit in seen:
        assert commit in readme and f"results/{folder}/" in readme


def test_the_50_lenet5_runs_are_what_results_readme_says():
    """results/README.md's account (K = 5, 50 runs; runs 8-49 from the clean commit 7d38d68)
    is what the records say."""
    readme = (RESULTS / "README.md").read_text()
    assert "K = 5, 50 runs" in readme and "Runs 8-49" in readme and "`7d38d68`" in readme
    df = load_results(RESULTS)
    df = df[df["arch"] == "lenet5"]
    stages = df.groupby("run")["stage"].nunique()
    assert sorted(stages.index) == list(range(50)) and (stages == 5).all()
    late = df[df["run"] >= 8]["git_commit"].unique()
    assert len(late) == 1 and late[0].startswith("7d38d68") and not late[0].endswith("+dirty")
