"""The CLI: each bad input is one line on stderr, exit code 2, and stored results untouched."""

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_DATA

from lth_core.analysis.metrics import table2
from lth_core.cli import main
from lth_core.store import load_results

GOOD = ["search", "--arch", "lenet5", "--runs", "1", "--stages", "2", "--max-epochs", "1",
        "--batch-size", "64", "--data", TINY_DATA, "--no-progress", "--device", "cpu"]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("stored")
    assert main(GOOD + ["--results", str(root)]) == 0
    return root


def _with(flag: str, value: str) -> list[str]:
    args = list(GOOD)
    args[args.index(flag) + 1] = value
    return args


BAD = {
    "unknown arch": (_with("--arch", "lenet6"), "unknown architecture 'lenet6'"),
    "prune rate above 1": (_with("--stages", "2") + ["--prune-rate", "1.5"], "(0, 1)"),
    "prune rate 0": (GOOD + ["--prune-rate", "0"], "(0, 1)"),
    "prune rate not a number": (GOOD + ["--prune-rate", "abc"], "not a number"),
    "K < 1": (_with("--stages", "0"), "--stages"),
    "runs < 1": (_with("--runs", "0"), "--runs"),
    "missing data path": (_with("--data", "/nonexistent/cifar.tar.gz"), "/nonexistent"),
    "misspelt flag": (GOOD + ["--prune-rat", "0.2"], "unrecognized arguments: --prune-rat"),
    "unknown subcommand": (["serch"], "invalid choice"),
    "workers 0": (GOOD + ["--workers", "0"], "--workers"),
    "workers and population": (GOOD + ["--workers", "2", "--population", "2"],
                               "exclude each other"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2(case, stored, capsys):
    args, expected = BAD[case]
    before = _snapshot(stored)
    assert main(args + ["--results", str(stored)] if args[0] == "search" else args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err and "Traceback" not in err
    assert _snapshot(stored) == before


def test_malformed_data_file(tmp_path, stored, capsys):
    fake = tmp_path / "cifar.tar.gz"
    fake.write_text("not a tarball")
    before = _snapshot(stored)
    assert main(_with("--data", str(fake)) + ["--results", str(stored)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _snapshot(stored) == before


def test_results_path_is_a_file_or_unwritable(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(GOOD + ["--results", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(GOOD + ["--results", str(f / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_other_setup_refused_without_harm(stored, capsys):
    before = _snapshot(stored)
    assert main(GOOD + ["--prune-rate", "0.3", "--results", str(stored)]) == 2
    err = capsys.readouterr().err.strip()
    assert "prune_rate" in err and len(err.splitlines()) == 1
    assert _snapshot(stored) == before


def test_report_formats(stored, capsys):
    assert main(["report", "--results", str(stored)]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "%" in out
    assert main(["report", "--results", str(stored), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("arch,")
    assert main(["report", "--results", str(stored / "nope")]) == 2


def test_report_leaves_out_incomplete_runs(stored, tmp_path, capsys):
    """A run with stage 0 of K = 2 only is unfinished: reported as left out, not counted as a
    failed search in SR, A_gain and LTS."""
    root = tmp_path / "r"
    shutil.copytree(stored, root)
    rec = json.loads((root / "lenet5" / "run-000" / "stage-0.json").read_text())
    (root / "lenet5" / "run-007").mkdir()
    (root / "lenet5" / "run-007" / "stage-0.json").write_text(json.dumps({**rec, "run": 7}))
    note = "lenet5: 1 incomplete run left out (fewer than K = 2 stages recorded)"
    assert main(["report", "--results", str(root)]) == 0
    assert note in capsys.readouterr().out
    assert main(["report", "--results", str(root), "--format", "csv"]) == 0
    out = capsys.readouterr()
    row = pd.read_csv(io.StringIO(out.out)).iloc[0]
    want = table2(load_results(stored)).loc["lenet5"]
    assert (row["n_runs"], row["n_incomplete"]) == (want["n_runs"], 1)
    assert row["sr"] == pytest.approx(want["sr"]) and note in out.err
    shutil.rmtree(root / "lenet5" / "run-000")  # only the unfinished run left
    for other in (root / "lenet5").glob("run-00[1-6]"):
        shutil.rmtree(other)
    assert main(["report", "--results", str(root)]) == 2
    err = capsys.readouterr().err
    assert "no complete run" in err and len(err.strip().splitlines()) == 1


def test_console_entry_point_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lth_core", "search", "--arch", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_workers_continue_the_stored_search(stored, tmp_path, capsys):
    """--workers trains runs 1 and 2 in two processes next to the stored run 0."""
    assert main(_with("--runs", "3") + ["--workers", "2", "--results", str(stored)]) == 0
    from lth_core import load_results

    df = load_results(stored)
    assert sorted(df["run"].unique()) == [0, 1, 2] and len(df) == 6
