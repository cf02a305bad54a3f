"""The width study: loading, complete-run counting, the trend test and the chapter."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config

from lth_book.stats import MIN_FOR_INTERVAL, mean_ci, proportion_ci
from lth_book.width import WIDTHS, load_width, per_run, width_roots, width_summary, width_trend
from lth_book.width_report import fig_width, setup_differences, trend_verdict
from lth_core import build, ticket_search
from lth_core.analysis.metrics import complete_runs, table2
from lth_core.config import TrainConfig
from lth_core.models import WIDTH_PARAM_COUNTS

ROOT = Path(__file__).resolve().parent.parent
CFG = tiny_config(stages=2, train=TrainConfig(lr=0.05, max_epochs=1, patience=1,
                                               batch_size=64))


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_data):
    """Tiny width study: 3 runs at widths 1/8, 1/4 and 1, 4 at 1/2 (one of them unfinished:
    its last stage record is removed), 2 at width 2 (too few to count)."""
    root = tmp_path_factory.mktemp("results")
    roots = width_roots(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per run, as the searches run (and cheap on 2 cores)
    try:
        for name, runs in (("lenet5-w0.125", 3), ("lenet5-w0.25", 3), ("lenet5-w0.5", 4),
                           ("lenet5", 3), ("lenet5-w2", 2)):
            ticket_search(lambda n=name: build(n), tiny_data, CFG, name=name, runs=runs,
                          results=roots[name].parent, progress=False)
    finally:
        torch.set_num_threads(threads)
    (roots["lenet5-w0.5"] / "run-003" / "stage-1.json").unlink()
    return root


def test_load_width_reads_both_places(study, tmp_path):
    df = load_width(study)
    assert set(df["arch"]) == set(WIDTHS)
    assert (df["params"] == df["arch"].map(WIDTH_PARAM_COUNTS)).all()
    assert df.loc[df["arch"] == "lenet5-w0.5", "width"].unique().tolist() == [0.5]
    assert list(df.drop_duplicates("arch")["arch"]) == WIDTHS  # smallest first
    empty = load_width(tmp_path)
    assert empty.empty and {"arch", "run", "stage", "width", "params"} <= set(empty.columns)


def test_summary_counts_complete_runs_only(study):
    df = load_width(study)
    s = width_summary(df)
    assert list(s.index) == WIDTHS
    half = s.loc["lenet5-w0.5"]
    assert (half["runs"], half["complete_runs"], half["incomplete_runs"]) == (4, 3, 1)
    assert s.loc["lenet5-w2", "status"] == "not enough runs"
    assert (s.drop("lenet5-w2")["status"] == "ok").all()
    done, left_out = complete_runs(df)
    assert left_out == {"lenet5-w0.5": 1}
    t2 = table2(done)
    for name, r in s.iterrows():
        lo, hi = proportion_ci(int(r["n_success"]), int(r["complete_runs"]))
        assert (r["sr_lo"], r["sr_hi"]) == pytest.approx((100 * lo, 100 * hi))
        assert r["sr"] == pytest.approx(t2.at[name, "sr"])
        assert r["lts"] == pytest.approx(t2.at[name, "lts"])
        np.testing.assert_allclose(r["a_gain_mean"], t2.at[name, "best_sparse_a_gain_mean"])
        np.testing.assert_allclose(r["tl_gain_mean"], t2.at[name, "best_sparse_tl_gain_mean"])
    pr = per_run(df)
    assert len(pr) == 3 + 3 + 3 + 3 + 2
    for name in WIDTHS:  # LTS is the mean over runs of success x A_gain
        v = pr.loc[pr["arch"] == name, "lts"]
        assert v.mean() == pytest.approx(s.at[name, "lts"])
        lo, hi = mean_ci(v)
        np.testing.assert_allclose((s.at[name, "lts_lo"], s.at[name, "lts_hi"]),
                                   (max(0.0, lo), hi))
    assert list(s["complete_runs"]) == [3, 3, 3, 3, 2]
    for name, r in s.iterrows():  # the bootstrap interval of the mean A_gain brackets it
        gains = pr.loc[(pr["arch"] == name) & pr["success"], "a_gain"]
        if len(gains) >= MIN_FOR_INTERVAL and gains.std() > 0:
            assert r["a_gain_lo"] <= r["a_gain_mean"] <= r["a_gain_hi"]
            assert gains.min() <= r["a_gain_lo"] and r["a_gain_hi"] <= gains.max()
        else:
            assert len(gains) >= MIN_FOR_INTERVAL or math.isnan(r["a_gain_lo"])
    dense = done[done["stage"] == 0].groupby("arch")["test_acc"]
    unit = pr["arch"].map(100 * dense.std(ddof=1) / dense.mean())
    np.testing.assert_allclose(pr["a_gain_sigma"], pr["a_gain"] / unit)


def test_summary_and_trend_of_nothing(tmp_path):
    s = width_summary(load_width(tmp_path))
    assert (s["status"] == "not computed yet").all() and (s["complete_runs"] == 0).all()
    t = width_trend(load_width(tmp_path))
    assert t["status"] == "not enough runs" and "none has them" in trend_verdict(t)
    fig = fig_width(s)
    assert len(fig.axes) == 3
    assert any("not computed yet" in x.get_text() for x in fig.axes[0].texts)


def test_setup_differences(study):
    df = load_width(study)
    assert setup_differences(df)[0] == []
    other = df.copy()
    cfg = json.loads(other["config"].iloc[0])
    cfg["train"]["cuda_graphs"] = not cfg["train"]["cuda_graphs"]  # engine-only: one setup
    other.loc[other["arch"] == "lenet5-w2", "config"] = json.dumps(cfg)
    assert setup_differences(other)[0] == []
    cfg = json.loads(other["config"].iloc[0])
    cfg["prune_rate"] = 0.3
    other.loc[other["arch"] == "lenet5-w2", "config"] = json.dumps(cfg)
    departs, hardware = setup_differences(other)
    assert departs == [("lenet5-w2", "config.prune_rate: 0.16 in the rest of the study, 0.3 in "
                                      "lenet5-w2")]
    assert hardware == {}
    other.loc[other["arch"] == "lenet5", "device"] = "another CPU"
    hardware = setup_differences(other)[1]
    assert list(hardware) == WIDTHS and hardware["lenet5"] == "another CPU"


def _records(gains: dict[str, list[float | None]]) -> pd.DataFrame:
    """Complete 2-stage runs per width: a gain in percent (None: a failed search)."""
    rows = []
    for name, per_run_gain in gains.items():
        for run, g in enumerate(per_run_gain):
            sparse = 60.0 * (1 + g / 100) if g is not None else 59.0
            for stage, acc in enumerate([60.0, sparse]):
                rows.append(dict(arch=name, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=1.0, traj_len_2d=1.0,
                                 config='{"stages": 2}', data_checksum="x"))
    return pd.DataFrame(rows)


def test_trend_supported_contradicted_and_not_shown():
    falling = _records({w: [3.0 - i + d for d in (0.0, 0.1, -0.1, 0.05)]
                        for i, w in enumerate(WIDTHS)})
    t = width_trend(falling, n_perm=2000)
    assert t["status"] == "supported" and trend_verdict(t).startswith("Supported")
    assert t["rho"] == pytest.approx(-1.0) and t["slope"] < 0 and t["p_value"] < 0.01
    assert t["rho_ci"][1] < 0 and t["widths"] == WIDTHS and t["n"] == [4] * len(WIDTHS)
    assert t == width_trend(falling, n_perm=2000)  # deterministic
    rising = _records({w: [1.0 + i + d for d in (0.0, 0.1, -0.1)] for i, w in enumerate(WIDTHS)})
    assert width_trend(rising, n_perm=2000)["status"] == "contradicted"
    rng = np.random.default_rng(0)
    flat = _records({w: list(1.0 + rng.normal(0, 0.5, 6)) for w in WIDTHS})
    t = width_trend(flat, n_perm=2000)
    assert t["status"] == "not shown" and t["p_value"] > 0.05
    same = _records({w: [1.0, None, 1.0] for w in WIDTHS})  # identical everywhere
    t = width_trend(same, stat="sr", n_perm=500)
    # no slope at all: scipy's two-sided p (twice the smaller tail, each counting the ties at
    # 0) is 1 on a symmetric null, within Monte Carlo error of it on 500 shuffles
    assert t["slope"] == 0 and t["p_value"] > 0.95 and math.isnan(t["rho"])


def test_trend_needs_three_widths_with_enough_runs():
    gains = {w: [2.0, 1.0, 1.5] for w in WIDTHS}
    gains["lenet5-w2"] = [1.0, 1.0]  # 2 complete runs: left out
    t = width_trend(_records(gains), n_perm=200)
    assert t["widths"] == WIDTHS[:-1] and t["left_out"] == {"lenet5-w2": 2}
    assert "lenet5-w2 (2 complete)" in trend_verdict(t)
    gains["lenet5"] = gains["lenet5-w0.125"] = [1.0]
    t = width_trend(_records(gains), n_perm=200)
    assert t["status"] == "not enough runs" and math.isnan(t["p_value"])
    assert trend_verdict(t).startswith("Not enough runs")


def test_trend_permutation_p_matches_exact_enumeration():
    """3 widths x 3 runs: the Monte Carlo p of the slope against all 1680 distinct ways to
    split the 9 per-run values into groups of 3."""
    gains = {"lenet5-w0.25": [2.0, 1.2, 0.9], "lenet5-w0.5": [1.5, 0.4, 1.1],
             "lenet5": [0.8, 1.0, 0.3]}
    t = width_trend(_records(gains), n_perm=20_000, seed=1)
    y = np.concatenate(list(gains.values()))
    x = np.log10(np.repeat([WIDTH_PARAM_COUNTS[w] for w in gains], 3))
    slope = lambda v: np.polyfit(x, v, 1)[0]
    observed = slope(y)
    assert t["slope"] == pytest.approx(observed)
    slopes = []
    for a in itertools.combinations(range(9), 3):
        rest = [i for i in range(9) if i not in a]
        for b in itertools.combinations(rest, 3):
            c = [i for i in rest if i not in b]
            slopes.append(slope(y[list(a) + list(b) + c]))
    slopes = np.array(slopes)
    assert len(slopes) == 1680
    exact = np.mean(np.abs(slopes) >= abs(observed) - 1e-12)
    assert t["p_value"] == pytest.approx(exact, abs=0.015)
    assert t["p_decreasing"] == pytest.approx(np.mean(slopes <= observed + 1e-12), abs=0.015)


def test_trend_of_a_gain_uses_successful_runs_only():
    gains = {w: [5.0 - i, None, 5.1 - i, 4.9 - i] for i, w in enumerate(WIDTHS)}
    t = width_trend(_records(gains), stat="a_gain", n_perm=500)
    assert t["n"] == [3] * 5
    np.testing.assert_allclose(t["values"], [5.0, 4.0, 3.0, 2.0, 1.0], atol=1e-9)
    lts = width_trend(_records(gains), stat="lts", n_perm=500)
    assert lts["n"] == [4] * 5  # LTS counts the failed runs, as zeros
    np.testing.assert_allclose(lts["values"], [3.75, 3.0, 2.25, 1.5, 0.75], atol=1e-9)
    with pytest.raises(ValueError):
        width_trend(_records(gains), stat="other")


def test_fig_width(study):
    s = width_summary(load_width(study))
    fig = fig_width(s, stats=("sr", "a_gain", "lts", "tl_gain"), paper_lenet5={"sr": 68})
    assert len(fig.axes) == 4
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "SR (%)", "Best Sparse A_gain (%)", "LTS", "Best Sparse TL_gain (%)"]
    # the paper's trend: a dashed line through width 1 with the given change per tenfold
    fig = fig_width(s, stats=("lts",), paper_slopes={"lts": -0.5})
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    (x0, x1), (y0, y1) = line.get_xdata(), line.get_ydata()
    assert (y1 - y0) / np.log10(x1 / x0) == pytest.approx(-0.5)
    assert y0 + -0.5 * np.log10(WIDTH_PARAM_COUNTS["lenet5"] / x0) == pytest.approx(
        s.loc["lenet5", "lts"])


def _papermill(out: Path, results: Path, stored: Path) -> str:
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "book" / "width.ipynb"), str(out),
           "--kernel", "python3", "--cwd", str(ROOT / "book"), "--no-progress-bar",
           "-p", "results_dir", str(results), "-p", "stored_results", str(stored),
           "-p", "n_perm", "500", "-p", "profile", "smoke"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import nbformat

    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    return "\n".join(str(o.get("data", o.get("text", ""))) for c in nb.cells
                     if c.cell_type == "code" for o in c.outputs)


def test_notebook_committed_clean():
    import nbformat

    nb = nbformat.read(ROOT / "book" / "width.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [c for c in code if c.outputs or c.execution_count]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'results_dir = "results"' in tagged[0].source


def test_notebook_runs_on_tiny_records(study, tmp_path):
    text = _papermill(tmp_path / "width.ipynb", study, tmp_path / "none")
    assert "3 complete runs, 1 in progress" in text
    assert "Not enough runs to count in the trend" in text  # width 2
    assert "permutation p" in text  # three widths count: the trend is tested
    assert "Rule: A width counts" in text


def test_notebook_without_results_says_not_computed_yet(tmp_path):
    (tmp_path / "empty").mkdir()
    text = _papermill(tmp_path / "width.ipynb", tmp_path / "empty", tmp_path / "empty")
    assert "not computed yet" in text and "Not enough runs" in text


def _noisy(spread: dict[str, float], runs: int = 6) -> pd.DataFrame:
    """Complete 2-stage runs whose dense accuracies spread by ``spread[w]`` % of their mean
    and whose gains are that spread times a factor shared by all widths: "smaller models
    benefit more" entirely because they are noisier."""
    z = np.array([-1.5, -0.5, 0.0, 0.5, 1.5, 0.2])[:runs]
    factor = np.array([1.0, 1.2, 0.8, 1.1, 0.9, 1.05])[:runs]
    rows = []
    for name, pct in spread.items():
        for run in range(runs):
            dense = 60.0 * (1 + pct / 100 * z[run])
            for stage, acc in enumerate([dense, dense * (1 + pct * factor[run] / 100)]):
                rows.append(dict(arch=name, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=1.0, traj_len_2d=1.0,
                                 config='{"stages": 2}', data_checksum="x"))
    return pd.DataFrame(rows)


def test_noise_alone_is_told_from_size():
    from lth_book.width import width_null
    from lth_book.width_report import noise_statement

    spread = dict(zip(WIDTHS, [4.0, 2.0, 1.0, 0.5, 0.25], strict=True))
    df = _noisy(spread)
    trends = {s: width_trend(df, s, n_perm=2000) for s in ("a_gain", "a_gain_sigma")}
    assert trends["a_gain"]["status"] == "supported"  # the raw gain falls with size...
    assert trends["a_gain_sigma"]["status"] == "not shown"  # ...but not in units of noise
    null = width_null(df, n_sim=2000)
    assert list(null.index) == WIDTHS
    dense = df[df["stage"] == 0].groupby("arch")["test_acc"]
    np.testing.assert_allclose(null["noise_pct"], (100 * dense.std() / dense.mean())[WIDTHS])
    assert null["sr_null"].between(40, 60).all()  # K = 2, exchangeable: P(success) = 1/2
    text = noise_statement(null, trends)
    assert "cannot credit it to size" in text and "Spearman rho with size -1.00" in text
    # gains that fall faster than the noise: size matters beyond it
    df2 = _noisy(dict(zip(WIDTHS, [1.0] * 5, strict=True)))
    df2.loc[df2["stage"] == 1, "test_acc"] *= df2.loc[df2["stage"] == 1, "arch"].map(
        dict(zip(WIDTHS, [1.04, 1.03, 1.02, 1.01, 1.0], strict=True)))
    t2 = {s: width_trend(df2, s, n_perm=2000) for s in ("a_gain", "a_gain_sigma")}
    assert t2["a_gain"]["status"] == t2["a_gain_sigma"]["status"] == "supported"
    assert "size matters beyond the noise" in noise_statement(width_null(df2, n_sim=500), t2)


def test_ensure_width_computes_only_what_is_missing(tmp_path):
    from lth_book.width import ensure_width

    kw = dict(results=tmp_path, widths=["lenet5-w0.125"], data="synthetic:48:24")
    ensure_width("smoke", runs=0, **kw)
    assert load_width(tmp_path).empty  # 0 runs: computes nothing
    ensure_width("smoke", runs=1, **kw)
    df = load_width(tmp_path)
    assert set(df["arch"]) == {"lenet5-w0.125"} and sorted(df["stage"]) == [0, 1]
    records = sorted((tmp_path / "width" / "lenet5-w0.125").rglob("stage-*.json"))
    before = [(p, p.read_bytes(), p.stat().st_mtime_ns) for p in records]
    ensure_width("smoke", runs=1, **kw)
    assert [(p, p.read_bytes(), p.stat().st_mtime_ns) for p in records] == before
    with pytest.raises(ValueError, match="not a width of the study"):
        ensure_width("smoke", runs=1, results=tmp_path, widths=["resnet18"])


def test_width_cli_refuses_bad_input_in_one_line(tmp_path):
    for args in (["--width", "lenet5-w3"], ["--runs", "0"]):
        r = subprocess.run([sys.executable, "-m", "lth_book.width", "--results", str(tmp_path),
                            *args], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("error: ")
    assert not any(tmp_path.iterdir())  # nothing written



def test_readme_width_block_is_the_study(study):
    from lth_book.readme import render

    block = render("width-study", study)
    # 3 complete runs at 1/8, 1/4, 1/2 (the fourth unfinished) and 1; 2 at width 2
    assert "1/8: 3, 1/4: 3, 1/2: 3, 1: 3, 2: 2 (target 8; 14 in all)" in block
    cells = " ".join(block.split())  # the table's columns are padded
    assert "| 1/2 | 15,888 | 3 |" in cells and "| 2 | 244,962 | 2 |" in cells
    assert "4 widths with at least 3 complete runs, 1,189 to 62,006 parameters, 52x" in block
    assert "Verdict on claim (a) within one family: **" in block


def test_power_is_the_rejection_rate_of_the_permutation_test_it_simulates(monkeypatch):
    """`width_power` simulates `width_trend`'s permutation test: its power agrees with the
    rejection rate of that test on fresh studies with a known slope and unequal spreads, it
    goes through the permutation test (not a normal approximation), and the runs it says are
    needed reach the target."""
    import lth_book.width as W
    import lth_book.width_power as P

    rng = np.random.default_rng(1)
    widths = W.WIDTHS[:4]
    x = np.log10([WIDTH_PARAM_COUNTS[w] for w in widths])
    sd, slope, n = np.array([2.0, 1.5, 1.0, 0.5]), -0.8, 10

    def frame(k: int) -> pd.DataFrame:
        y = 3 + slope * (x - x.mean())[:, None] + sd[:, None] * rng.normal(size=(4, k))
        return pd.DataFrame([{"arch": w, "run": i, "params": WIDTH_PARAM_COUNTS[w],
                              "success": True, "a_gain": v, "tl_gain": 0.0, "sr": 100.0,
                              "lts": v, "a_gain_sigma": v}
                             for w, row in zip(widths, y, strict=True)
                             for i, v in enumerate(row)])

    current = {}
    for module in (W, P):  # the study's trend and its power read the same runs
        monkeypatch.setattr(module, "per_run", lambda df, select_on="test": current["pr"])
    records = pd.DataFrame({"arch": ["any"]})  # per_run is replaced: any non-empty frame
    calls = []
    real = P.permutation
    monkeypatch.setattr(P, "permutation", lambda *a, **k: calls.append(1) or real(*a, **k))
    current["pr"] = frame(n)
    p = P.width_power(records, "lts", slope=slope, n_sim=200, n_sim_search=100)
    assert p["widths"] == widths and p["n"] == [n] * 4 and len(calls) >= 200
    # its prediction for n runs from spreads measured on many (one sample of n is noisy)
    current["pr"] = frame(400)
    expected = P.width_power(records, "lts", slope=slope, runs=n, n_sim=600,
                             n_sim_search=100)["power"]
    assert 0.3 < expected < 0.8  # a design where the rate is most sensitive to errors
    hits = 0
    for _ in range(200):
        current["pr"] = frame(n)
        hits += W.width_trend(records, "lts", n_perm=400, n_boot=10)["status"] == "supported"
    assert abs(hits / 200 - expected) < 0.1, (hits / 200, expected)
    # the runs needed reach the target; half as many do not
    current["pr"] = frame(400)
    small = P.width_power(records, "lts", slope=slope / 3, n_sim=300, n_sim_search=300)
    runs = small["runs_needed"]
    assert 10 < runs < P.MAX_RUNS
    at = P.width_power(records, "lts", slope=slope / 3, runs=runs, n_sim=300)["power"]
    half = P.width_power(records, "lts", slope=slope / 3, runs=runs // 2, n_sim=300)["power"]
    assert at >= 0.74 and half < 0.7
    assert small["detectable"] > abs(slope / 3) * 0.2


def test_the_paper_profile_runs_the_family_with_the_papers_50_runs(monkeypatch, tmp_path):
    import lth_book.width as width
    from lth_book.width import ensure_width

    calls = []
    monkeypatch.setattr(width, "ensure_results",
                        lambda prof, **kw: calls.append((prof.name, kw["archs"], kw["runs"])))
    ensure_width("quick", results=tmp_path)
    ensure_width("smoke", results=tmp_path)
    assert calls == []  # the CPU profiles read the stored study
    ensure_width("paper", results=tmp_path)
    assert calls == [("paper", [w], 50) for w in WIDTHS]
