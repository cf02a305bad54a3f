"""README.md's generated blocks: rewritten from the records, nothing else touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lth_book.readme import BLOCKS, _cost, block_text, markers, render, write_readme

ROOT = Path(__file__).resolve().parent.parent


def _doc(stale: str = "stale 1.23") -> str:
    lb, le = markers("lenet5-table2")
    wb, we = markers("width-study")
    nb, ne = markers("gain-or-noise")
    tb, te = markers("trajectory-scale")
    return ("# Title\n\nProse before.\n\n" + lb + "\n" + stale + "\n" + le + "\n\n"
            + wb + "\n" + stale + "\n" + we + "\n\n"
            + nb + "\n" + stale + "\n" + ne + "\n\n"
            "- a bullet that goes on:\n  " + tb + "\n  " + stale + "\n  " + te
            + "\n- next bullet\n\nProse after.\n")


def _outside(text: str) -> str:
    """``text`` with every block's content cut out (markers and their indentation kept)."""
    for name in BLOCKS:
        begin, end = markers(name)
        i, j = text.index(begin) + len(begin), text.index(end)
        text = text[:i] + "|" + text[text.rfind("\n", 0, j) + 1:]
    return text


def test_blocks_are_rewritten_from_the_records_and_nothing_else(tmp_path):
    readme, results = tmp_path / "README.md", tmp_path / "results"
    results.mkdir()
    readme.write_text(_doc())
    assert write_readme(readme, results) == ["lenet5-table2", "width-study", "gain-or-noise",
                                           "trajectory-scale"]
    text = readme.read_text()
    assert "stale 1.23" not in text
    for name in BLOCKS:
        assert block_text(text, name) == render(name, results)
    assert _outside(text) == _outside(_doc())  # the rest is as it was
    assert "\n  Not measured yet" in text  # the list item's block stays in the item
    assert write_readme(readme, results) == []  # idempotent


def test_readme_cli_refuses_bad_input_in_one_line(tmp_path):
    other = tmp_path / "NOTES.md"
    other.write_text("no block here\n")
    readme = tmp_path / "README.md"
    readme.write_text(_doc())
    for args in ([str(other)], [str(tmp_path / "missing.md")],
                 [str(readme), "--block", "nonsense"]):
        r = subprocess.run([sys.executable, "-m", "lth_book.readme", *args,
                            "--results", str(tmp_path)], capture_output=True, text=True,
                           cwd=ROOT)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("error: ")
    assert other.read_text() == "no block here\n" and readme.read_text() == _doc()


@pytest.mark.parametrize("name", list(BLOCKS))
def test_the_repository_readme_shows_the_stored_results(name):
    """README.md's blocks are what `results/` gives (after new records: `make readme`, and
    commit both)."""
    text = (ROOT / "README.md").read_text()
    assert block_text(text, name) == render(name), f"README.md's {name} is stale: make readme"


def test_readme_cli_refuses_records_git_does_not_track(tmp_path):
    """A README written from uncommitted records disagrees with every clean clone's records
    (this failed `test_readme` on a clean clone once): the command refuses, in one line."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    readme, results = tmp_path / "README.md", tmp_path / "results"
    (results / "lenet5").mkdir(parents=True)
    readme.write_text(_doc())
    git("init", "-q")
    git("add", "README.md")
    git("commit", "-qm", "readme")
    (results / "lenet5" / "search.json").write_text("{}")

    def cli(*extra):
        return subprocess.run([sys.executable, "-m", "lth_book.readme", str(readme),
                               "--results", str(results), *extra],
                              capture_output=True, text=True, cwd=ROOT)

    r = cli()
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not committed" in r.stderr and "search.json" in r.stderr
    assert readme.read_text() == _doc()  # nothing written
    git("add", "results")
    git("commit", "-qm", "records")
    assert cli().returncode == 0 and readme.read_text() != _doc()
    (results / "lenet5" / "search.json").write_text('{"changed": 1}')  # a committed file edited
    assert cli().returncode == 2
    assert cli("--uncommitted").returncode == 0


def test_cost_line_sums_the_records_and_claims_cores_only_from_their_provenance():
    df = pd.DataFrame({"run": [0, 0, 1, 1], "wall_time_s": [60.0, 120.0, 240.0, 300.0],
                       "device_type": "cpu", "device": "AMD EPYC (1 threads)"})
    text = _cost(df)
    assert "0.2 core-hours for the 2 runs" in text  # 720 s in all
    assert "3-9 core-minutes a run (median 6)" in text
    assert "1.0-5.0 a stage (median 3.0)" in text
    df.loc[3, "device"] = "AMD EPYC (2 threads)"  # one record on two threads: no core claim
    assert "core-" not in _cost(df) and "wall-clock hours" in _cost(df)
    df["device"], df["device_type"] = "NVIDIA H200", "cuda"
    assert "core-" not in _cost(df)
