"""Statistics that do not mislead (issue 18, item 4): no interval from fewer than 5
successes, and every one-sided test reports its other tail. (The simulated power of the width
study: tests/test_width.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_results
from test_width import _records

from lth_book.claims import (
    NULL_NOT_BEYOND,
    bootstrap_ci,
    null_model,
    null_status,
    size_trend,
)
from lth_book.findings import rank_trend
from lth_book.stats import MIN_FOR_INTERVAL
from lth_book.tables import interval_table
from lth_book.width import WIDTHS, width_null, width_summary, width_trend
from lth_book.width_report import noise_statement, summary_frame


def _gains(k: int, n: int) -> np.ndarray:
    """n runs of 2 stages, the first k of which find a ticket (+1 to +2 points)."""
    rows = [[70.0, 71.0 + 0.2 * i] for i in range(k)] + [[70.0, 69.0]] * (n - k)
    return np.array(rows)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_a_gain_from_fewer_than_5_successes_has_no_interval(k):
    ci = bootstrap_ci(make_results({"lenet5": _gains(k, 8)}), n_boot=200)
    r = ci.loc["lenet5"]
    assert math.isfinite(r["a_gain"]) and math.isnan(r["a_gain_lo"]) and math.isnan(
        r["a_gain_hi"])
    assert math.isfinite(r["lts_lo"])  # LTS is a mean over all 8 runs: it keeps its interval
    assert f"too few successes ({k})" in interval_table(ci).iloc[0]["A_gain % (95 % interval)"]
    t = bootstrap_ci(make_results({"lenet5": _gains(k, 8)}), mean_method="t")
    assert math.isnan(t.at["lenet5", "a_gain_lo"])


def test_a_gain_from_5_successes_has_an_interval():
    assert MIN_FOR_INTERVAL == 5
    r = bootstrap_ci(make_results({"lenet5": _gains(5, 8)}), n_boot=200).loc["lenet5"]
    assert r["a_gain_lo"] < r["a_gain"] < r["a_gain_hi"]


def test_width_study_shows_too_few_not_a_two_point_range():
    # width 2 of the stored study: 2 successes, gains 0.48 and 0.52
    df = _records({w: [0.48, 0.52, None] if w == "lenet5-w2" else [1.0, 1.5, 2.0, 2.5, 3.0]
                   for w in WIDTHS})
    s = width_summary(df)
    assert math.isnan(s.at["lenet5-w2", "a_gain_lo"])
    assert math.isfinite(s.at["lenet5", "a_gain_lo"])
    frame = summary_frame(s).set_index("width")
    assert frame.at["2", "A_gain mean, 95 % bootstrap"] == "too few (2)"
    assert "to" in frame.at["1", "A_gain mean, 95 % bootstrap"]


def test_null_model_reports_sr_below_the_null():
    """19 of 38 successes where noise gives 80 %: "not beyond noise" hides that SR is below it."""
    rng = np.random.default_rng(0)
    dense = 70 + rng.normal(0, 0.5, (40, 1))
    worse = make_results({"lenet5": np.hstack([dense] + [dense - 1.5 + rng.normal(0, 0.5, (40, 1))
                                                         for _ in range(4)])})
    row = null_model(worse, n_sim=2000, n_rep=300).loc["lenet5"]
    assert row["p_sr"] > 0.5 and row["p_sr_below"] < 1e-6
    said, = null_status(null_model(worse, n_sim=500, n_rep=200))
    assert said == "SR below the null"
    # with a success too (then the verdict also weighs A_gain): SR still named below
    some = make_results({"lenet5": np.hstack([dense] + [dense - 1.0 + rng.normal(0, 0.5, (40, 1))
                                                        for _ in range(4)])})
    row = null_model(some, n_sim=500, n_rep=200).loc["lenet5"]
    assert row["n_success"] >= 1 and row["p_sr_below"] < 1e-6
    said, = null_status(null_model(some, n_sim=500, n_rep=200))
    assert said == "SR and A_gain below the null"
    noise = make_results({"lenet5": 70 + rng.normal(0, 0.5, (40, 5))})
    said, = null_status(null_model(noise, n_sim=500, n_rep=200))
    assert said == NULL_NOT_BEYOND


def test_width_noise_statement_names_widths_below_the_null():
    df = _records({w: [0.5] + [None] * 9 for w in WIDTHS})
    rng = np.random.default_rng(2)
    dense = df["stage"] == 0  # dense accuracies that vary, so there is a noise to simulate
    df.loc[dense, "test_acc"] = 60.0 + rng.normal(0, 0.01, dense.sum())
    null = width_null(df, n_sim=500)
    assert (null["p_sr_below"] < 0.05).all()  # 1 of 10 where noise gives 50 % (K = 2)
    text = noise_statement(null, {})
    assert "SR is below what noise alone gives" in text


def test_trends_report_the_other_tail():
    # a clear rise with size: the paper's one-sided test of a fall says only "not shown"
    accs, params = {}, {}
    rng = np.random.default_rng(0)
    for i in range(4):
        dense = 70 + rng.normal(0, 0.1, (6, 1))
        accs[f"a{i}"] = np.hstack([dense, dense + 1.0 + i])
        params[f"a{i}"] = 1000 * 10**i
    t = size_trend(make_results(accs), params, n_boot=50)
    assert t["p_decreasing"] == pytest.approx(1.0) and t["p_increasing"] == pytest.approx(1 / 24)
    r = rank_trend({"lenet5": 1.0, "resnet32": 2.0, "mobilenet_v1": 3.0, "resnet18": 4.0})
    assert r["p"] == pytest.approx(1.0) and r["p_up"] == pytest.approx(1 / 24)
    rising = _records({w: [1.0 + i + d for d in (0.0, 0.1, -0.1)] for i, w in enumerate(WIDTHS)})
    w = width_trend(rising, n_perm=500)
    assert w["p_increasing"] < 0.01 and w["p_decreasing"] > 0.9


def test_findings_text_names_a_rise():
    from lth_book.findings import _trend_text

    r = rank_trend({"lenet5": 1.0, "resnet32": 2.0, "mobilenet_v1": 3.0, "resnet18": 4.0})
    assert "a rise with size instead" in _trend_text(r)
    flat = rank_trend({"lenet5": 2.0, "resnet32": 1.0, "mobilenet_v1": 3.0, "resnet18": 2.5})
    assert "rise" not in _trend_text(flat)
