"""Gain or noise? (lth_book.noise): the verdict rule on synthetic searches whose pruning adds
+1 sigma, nothing or -1 sigma, the simulator against closed forms, and the paper's side
computed from lth_book.paper and the shared per-run file alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lth_book import noise, stagesets
from lth_book.authors import AUTHORS_GAINS
from lth_book.paper import PAPER_PARAMS


def _records(shift: float, n: int = 120, k: int = 5, sigma: float = 1.0, mu: float = 60.0,
             rho: float = 0.0, seed: int = 0, arch: str = "lenet5") -> pd.DataFrame:
    """Records of ``n`` runs of ``k`` stages: equally noisy stages with within-run
    correlation ``rho``; every pruned stage's mean moved by ``shift`` sigma."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((n, 1))
    e = math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.standard_normal((n, k))
    acc = mu + sigma * e
    acc[:, 1:] += shift * sigma
    return pd.DataFrame([{"arch": arch, "run": r, "stage": s, "test_acc": acc[r, s],
                          "density": 0.84**s, "pruner": "lamp"}
                         for r in range(n) for s in range(k)])


@pytest.mark.parametrize("shift, want", [(1.0, noise.BEYOND), (0.0, noise.NOISE),
                                         (-1.0, noise.BELOW)])
def test_pruning_that_adds_one_sigma_nothing_or_takes_one_is_judged_so(shift, want):
    s = stagesets.stage_set(_records(shift), "synthetic")
    got = noise.set_noise(s)
    assert got["verdict"] == want, got
    # the selection-free estimand sees the shift itself, in points of accuracy
    eff = stagesets.stage_effects(s)
    assert np.allclose(eff["diff"], shift, atol=0.4)
    assert ((eff["lo"] <= shift) & (shift <= eff["hi"])).mean() >= 0.75


def test_the_verdict_rule_table():
    a = noise.ALPHA / 2  # significant
    n = 0.5  # not
    cases = [((a, True, n, True), noise.BEYOND), ((n, True, a, True), noise.BEYOND),
             ((a, False, n, True), noise.BELOW), ((n, False, a, False), noise.BELOW),
             ((a, True, a, False), noise.MIXED), ((a, False, a, True), noise.MIXED),
             ((n, True, n, False), noise.NOISE), ((n, False, math.nan, True), noise.NOISE),
             ((a, True, math.nan, False), noise.BEYOND)]
    for args, want in cases:
        assert noise.verdict(*args) == want, (args, want)


@pytest.mark.parametrize("k", [2, 5])
def test_the_null_agrees_with_closed_forms(k):
    z = noise.null_gains(k, rho=0.0, n_sim=200_000, seed=1)
    assert abs(len(z) / 200_000 - (1 - 1 / k)) < 0.005  # SR = 1 - 1/K
    if k == 2:  # E[e1 - e0 | e1 > e0] = E|N(0, 2)| = 2 / sqrt(pi)
        assert abs(z.mean() - 2 / math.sqrt(math.pi)) < 0.01
    # a within-run correlation only scales the gain, by sqrt(1 - rho); SR is unchanged
    z5 = noise.null_gains(k, rho=0.5, n_sim=200_000, seed=1)
    assert abs(z5.mean() / z.mean() - math.sqrt(0.5)) < 0.01
    assert len(z5) == len(z)


@pytest.mark.parametrize("kind", stagesets.KINDS)
def test_each_model_kinds_pure_null_gives_the_exchangeable_success_rate(kind):
    s = stagesets.stage_set(_records(-1.0, n=200, seed=3), "synthetic")
    p = stagesets.predict(s.acc, kind, n_runs=50, null=True, n_sim=3000, seed=0)
    assert abs(p["sr"] - 80.0) < 4.0, p["sr"]
    fitted = stagesets.predict(s.acc, kind, n_runs=50, null=False, n_sim=3000, seed=0)
    e = np.random.default_rng(9).standard_normal((200_000, 5))
    truth = 100 * (e[:, 1:].max(axis=1) - 1.0 >= e[:, 0]).mean()  # about 48 %
    assert abs(fitted["sr"] - truth) < 5.0, (fitted["sr"], truth)  # keeps pruning's harm


def test_a_well_specified_model_covers_held_out_halves():
    s = stagesets.stage_set(_records(0.0, n=40, rho=0.2, seed=5), "synthetic")
    o = stagesets.out_of_sample(s, kinds=("normal",), n_splits=12, n_sim=1000).iloc[0]
    assert o["sr_cover"] >= 0.8 and o["a_gain_cover"] >= 0.8, o.to_dict()
    small = stagesets.stage_set(_records(0.0, n=6), "small")
    assert stagesets.out_of_sample(small).empty  # too few runs to split


def test_unfinished_runs_are_left_out_not_counted_as_failures():
    df = _records(0.0, n=5)
    df = df[~((df["run"] == 4) & (df["stage"] >= 3))]  # run 4 has stages 0-2 only
    s = stagesets.stage_set(df, "x")
    assert s.k == 5 and s.n == 4 and s.left_out == 1 and 4 not in s.runs
    assert stagesets.stage_set(df[df["run"] < 2], "x") is None  # fewer than MIN_RUNS


def test_too_few_successes_are_not_tested():
    s = stagesets.stage_set(_records(-3.0, n=10), "x")  # almost never a winner
    got = noise.set_noise(s)
    assert got["successes"] < noise.MIN_SUCCESSES and got["too_few"]
    assert math.isnan(got["p_mean"])
    assert got["verdict"] == noise.BELOW  # on SR alone, the other tail reported


def test_effect_trend_finds_a_slope_and_not_a_flat_family():
    from lth_core.models import WIDTH_PARAM_COUNTS

    widths = sorted(WIDTH_PARAM_COUNTS, key=WIDTH_PARAM_COUNTS.get)[:4]

    def family(slope):
        out = []
        for i, w in enumerate(widths):
            x = math.log10(WIDTH_PARAM_COUNTS[w])
            df = _records(slope * x, n=10, seed=10 + i, arch=w)
            out.append(stagesets.stage_set(df, f"width/{w}"))
        return out

    rising = stagesets.effect_trend(family(3.0), n_perm=999, n_power=20, power_perm=99)
    flat = stagesets.effect_trend(family(0.0), n_perm=999, n_power=20, power_perm=99)
    assert rising["slope"] > 0 and rising["p"] < 0.01 and rising["p_rank"] < 0.01
    assert flat["p"] > 0.05
    assert 0 <= flat["power"] <= 1 and flat["n_sets"] == 4


def test_paper_side_needs_only_lth_book_paper_and_the_shared_file():
    if not AUTHORS_GAINS.is_file():
        pytest.skip("no shared/paper folder beside this checkout")
    p = noise.paper_noise(0.0, n_sim=50_000)
    assert list(p.index) == list(PAPER_PARAMS) and set(p["verdict"]) <= set(noise.VERDICTS)
    le = p.loc["lenet5"]
    # LeNet-5: 36 successes of 53 searches against 80 %; its gains, 0.96 points of spread
    assert (le["searches"], le["successes"]) == (53, 36)
    assert le["p_sr"] == pytest.approx(__import__("scipy").stats.binomtest(36, 53, 0.8).pvalue)
    assert le["z_mean"] == pytest.approx(1.0845 * 67.92 / 100 / 0.96, rel=0.01)
    # the null's mean A_gain is its gain in sigma times sigma / mu
    assert le["a_gain_null"] == pytest.approx(le["z_null"] * 0.96 / 67.92 * 100)
    t = noise.gain_trend(p)
    assert t["orderings"] == 5040 and 0 < t["p"] <= 1


def test_without_the_authors_file_the_printed_numbers_still_render(tmp_path):
    p = noise.paper_noise(0.0, authors=tmp_path / "absent.json", n_sim=20_000)
    assert p["n_gains"].eq(0).all() and p["p_mean"].isna().all()
    assert (p["searches"] == 50).all() and set(p["verdict"]) <= set(noise.VERDICTS)


def test_exact_trend_p_and_the_claim_verdict():
    p = pd.DataFrame({"z_mean": np.arange(7, 0, -1, dtype=float)}, index=list(PAPER_PARAMS))
    t = noise.gain_trend(p)  # gains fall perfectly with size: the most extreme ordering
    assert t["rho"] == pytest.approx(-1.0) and t["p"] == pytest.approx(2 / 5040)
    assert noise.claim_a_verdict(t) == "reproduced"
    assert noise.claim_a_verdict({**t, "rho": 1.0}) == "not reproduced"
    assert noise.claim_a_verdict({**t, "p": 0.2}) == "not reproduced"
    assert noise.claim_a_verdict({**t, "n": 2}) == "not computed at this budget"


def test_the_findings_row_is_the_claim_verdict_of_the_paper_against_noise():
    if not AUTHORS_GAINS.is_file():
        pytest.skip("no shared/paper folder beside this checkout")
    row = noise.noise_finding()
    st = noise.study(n_power=10)
    assert row["status"] == noise.claim_a_verdict(noise.gain_trend(st.paper)) == st.claim
    assert len(row["detail"]) == 7 and all(any(v in d for v in noise.VERDICTS)
                                           for d in row["detail"])
