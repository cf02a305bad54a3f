"""The paper's printed numbers (Tables 1 and 2) as data, the authors' own per-run numbers,
and what its LTS column really is.

Tables 1 and 2 are transcribed from "Not All Lotteries Are Made Equal" so our results can be
put next to the published ones cell by cell. The authors' per-run Best
Sparse gains (../shared/paper/authors-per-run-gains.json, from the plot data of their blog
post) come in through `authors_gains`, `authors_searches` (how many searches each row
implies: not always 50), `compare_gains` and `fig_gains_vs_authors` (ours against theirs).
Without that file (a checkout without shared/) these return None or an empty table and warn
(`MissingAuthorsData`).

The LTS column. The paper defines LTS Score = A_gain x SR, but its printed column is not
A_gain(Best Sparse) x SR/100 of its own rows (LeNet-5: 1.08 x 0.68 = 0.734, printed 1.2895).
From Table 2's rounded cells alone (`lts_candidates`), the closest formula,
SR/100 x (mean + std of the Best Sparse A_gain), matches six rows and misses PNASNet-B.
The per-run numbers settle it (`lts_candidates_per_run`, `lts_investigation`): with SR at
full precision and the mean and sample std of the per-run gains, that formula gives all seven
printed LTS values, cut (not rounded) to four decimals; PNASNet-B's gains (0.82 ± 0.51) give
its printed LTS and agree with its test-accuracy cells ((85.27 - 84.57) / 84.57 = 0.83 %),
while its printed A_gain cell (0.69 ± 0.43) does not: that cell is the misprint. We keep the
printed definition (`lts_printed_definition`), as `metrics.table2` does.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lth_core.analysis.metrics import KINDS


@dataclass(frozen=True)
class Protocol:
    """The paper's experimental protocol: runs per architecture, stages K, prune rate."""

    runs: int
    stages: int
    prune_rate: float

    @property
    def density(self) -> float:
        """The share of weights the last stage keeps: (1 - prune rate)^(K - 1)."""
        return (1 - self.prune_rate) ** (self.stages - 1)


# 50 runs of K = 5 stages, 16 % of the remaining weights pruned after each (§3)
PAPER_PROTOCOL = Protocol(runs=50, stages=5, prune_rate=0.16)

# Table 1, as printed (name -> # params). Keys are our architecture names.
PAPER_TABLE1: dict[str, str] = {
    "lenet5": "61K",
    "pnasnet_a": "0.13M",
    "pnasnet_b": "0.45M",
    "resnet32": "0.46M",
    "mobilenet_v1": "3.22M",
    "efficientnet_b0": "3.59M",
    "resnet18": "11.17M",
}

PAPER_NAMES: dict[str, str] = {
    "lenet5": "LeNet-5",
    "pnasnet_a": "PNASNet-A",
    "pnasnet_b": "PNASNet-B",
    "resnet32": "ResNet32",
    "mobilenet_v1": "MobileNetV1",
    "efficientnet_b0": "EfficientNet",
    "resnet18": "ResNet18",
}


def _parse_count(printed: str) -> int:
    scale = {"K": 1_000, "M": 1_000_000}[printed[-1]]
    return round(float(printed[:-1]) * scale)


# Table 1 as numbers (61K -> 61000), e.g. for `claims.size_trend`.
PAPER_PARAMS: dict[str, int] = {k: _parse_count(v) for k, v in PAPER_TABLE1.items()}

# Table 2, as printed: arch -> (SR %, LTS, {kind: (traj, tl_gain, test_acc, a_gain)}), each
# metric a (mean, std) pair. EfficientNet's Best Sparse A_gain std is printed "0.2".
_TABLE2 = {
    "lenet5": (68, 1.2895, {
        "dense": ((0.09, 0.03), (0.00, 0.00), (67.92, 0.96), (0.00, 0.00)),
        "best_sparse": ((0.09, 0.03), (0.003, 0.02), (68.65, 0.89), (1.08, 0.81)),
        "sparsest_matching": ((0.08, 0.03), (-0.004, 0.02), (68.40, 0.89), (0.72, 0.91)),
    }),
    "pnasnet_a": (87, 1.0748, {
        "dense": ((264.60, 26.04), (0.00, 0.00), (80.10, 0.55), (0.00, 0.00)),
        "best_sparse": ((321.56, 21.63), (24.35, 13.37), (80.75, 0.51), (0.80, 0.44)),
        "sparsest_matching": ((290.33, 27.50), (12.04, 12.32), (80.55, 0.54), (0.56, 0.46)),
    }),
    "pnasnet_b": (90, 1.2030, {
        "dense": ((89.08, 12.38), (0.00, 0.00), (84.57, 0.43), (0.00, 0.00)),
        "best_sparse": ((97.30, 10.74), (10.75, 18.71), (85.27, 0.32), (0.69, 0.43)),
        "sparsest_matching": ((90.80, 13.13), (2.48, 14.50), (84.87, 0.42), (0.30, 0.47)),
    }),
    "resnet32": (83, 0.7183, {
        "dense": ((48.16, 7.75), (0.00, 0.00), (89.90, 0.25), (0.00, 0.00)),
        "best_sparse": ((55.02, 8.78), (15.33, 21.17), (90.36, 0.24), (0.52, 0.35)),
        "sparsest_matching": ((48.09, 8.87), (0.65, 20.66), (90.20, 0.26), (0.34, 0.35)),
    }),
    "mobilenet_v1": (94, 0.7575, {
        "dense": ((204.81, 23.62), (0.00, 0.00), (85.29, 0.31), (0.00, 0.00)),
        "best_sparse": ((220.54, 26.55), (8.86, 13.60), (85.71, 0.26), (0.49, 0.31)),
        "sparsest_matching": ((201.61, 22.67), (-0.39, 12.23), (85.46, 0.32), (0.21, 0.36)),
    }),
    "efficientnet_b0": (88, 0.4801, {
        "dense": ((331.24, 43.58), (0.00, 0.00), (87.54, 0.23), (0.00, 0.00)),
        "best_sparse": ((327.18, 41.58), (0.95, 12.59), (87.85, 0.22), (0.35, 0.2)),
        "sparsest_matching": ((303.08, 50.72), (-6.67, 14.52), (87.65, 0.25), (0.12, 0.24)),
    }),
    "resnet18": (67, 0.5350, {
        "dense": ((22.60, 2.76), (0.00, 0.00), (93.47, 0.33), (0.00, 0.00)),
        "best_sparse": ((24.43, 3.22), (10.79, 20.73), (93.90, 0.16), (0.46, 0.34)),
        "sparsest_matching": ((21.48, 2.67), (-3.02, 14.94), (93.69, 0.26), (0.16, 0.33)),
    }),
}
_METRICS = ("traj", "tl_gain", "test_acc", "a_gain")


def paper_table2() -> pd.DataFrame:
    """Table 2 as printed, one row per arch, in the column names of `metrics.table2`.

    SR is in percent as printed; there is no n_runs column (the paper says 50 runs, but SRs
    such as 87 % and 83 % are not multiples of 2 %, so not every row can come from 50 runs).
    """
    rows = {}
    for arch, (sr, lts, kinds) in _TABLE2.items():
        row = {"sr": float(sr), "lts": lts}
        for kind in KINDS:
            for m, (mean, std) in zip(_METRICS, kinds[kind], strict=True):
                row[f"{kind}_{m}_mean"] = float(mean)
                row[f"{kind}_{m}_std"] = float(std)
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    return out


def lts_printed_definition(sr, a_gain):
    """LTS as the paper defines it: A_gain x SR, with SR as a fraction (SR in percent / 100).

    Works on floats and arrays. This is what `metrics.table2` reports. It does not reproduce
    the paper's own LTS column (see the module docstring and `lts_candidates`).
    """
    return a_gain * sr / 100.0


# Candidate formulas for the printed LTS column. Argument names pick the Table 2 cells:
# sr (percent), bs / bs_std (Best Sparse A_gain mean / std), sm / sm_std (Sparsest Matching),
# dense_acc / bs_acc (mean test accuracies of Dense / Best Sparse).
LTS_CANDIDATES: dict[str, Callable[..., float]] = {
    "A_gain(BS) x SR/100  [printed definition]": lambda sr, bs: lts_printed_definition(sr, bs),
    "mean over runs of success x A_gain(BS)  [= printed definition]":
        lambda sr, bs: sr / 100 * bs,
    "A_gain(BS) x SR  [SR in percent]": lambda sr, bs: bs * sr,
    "A_gain(SM) x SR/100": lambda sr, sm: sm * sr / 100,
    "(A_gain(BS) + A_gain(SM)) x SR/100": lambda sr, bs, sm: (bs + sm) * sr / 100,
    "mean(A_gain(BS), A_gain(SM)) x SR/100": lambda sr, bs, sm: (bs + sm) / 2 * sr / 100,
    "A_gain(BS) / (SR/100)": lambda sr, bs: bs / (sr / 100),
    "A_gain(BS) x (SR/100)^2": lambda sr, bs: bs * (sr / 100) ** 2,
    "A_gain(BS) x sqrt(SR/100)": lambda sr, bs: bs * np.sqrt(sr / 100),
    "A_gain(BS) / std": lambda bs, bs_std: bs / bs_std,
    "A_gain(BS) / std x SR/100": lambda sr, bs, bs_std: bs / bs_std * sr / 100,
    "(A_gain(BS) - std) x SR/100": lambda sr, bs, bs_std: (bs - bs_std) * sr / 100,
    "(A_gain(BS) + std) x SR/100": lambda sr, bs, bs_std: (bs + bs_std) * sr / 100,
    "(A_gain(SM) + std) x SR/100": lambda sr, sm, sm_std: (sm + sm_std) * sr / 100,
    "sqrt(A_gain(BS)^2 + std^2) x SR/100  [RMS of per-run gains]":
        lambda sr, bs, bs_std: np.sqrt(bs**2 + bs_std**2) * sr / 100,
    "gain of mean accuracies (BS vs Dense) x SR/100":
        lambda sr, bs_acc, dense_acc: (bs_acc - dense_acc) / dense_acc * 100 * sr / 100,
    "accuracy points (BS - Dense) x SR/100":
        lambda sr, bs_acc, dense_acc: (bs_acc - dense_acc) * sr / 100,
}

# Half a unit of the last printed digit: SR is a whole percent, the rest have 2 decimals.
_HALF_UNIT = {"sr": 0.5, "bs": 0.005, "bs_std": 0.005, "sm": 0.005, "sm_std": 0.005,
              "dense_acc": 0.005, "bs_acc": 0.005}
_LTS_HALF_UNIT = 0.00005


def _cells(row: pd.Series) -> dict[str, float]:
    return {
        "sr": row["sr"],
        "bs": row["best_sparse_a_gain_mean"],
        "bs_std": row["best_sparse_a_gain_std"],
        "sm": row["sparsest_matching_a_gain_mean"],
        "sm_std": row["sparsest_matching_a_gain_std"],
        "dense_acc": row["dense_test_acc_mean"],
        "bs_acc": row["best_sparse_test_acc_mean"],
    }


def _range(f: Callable[..., float], cells: dict[str, float],
           half: dict[str, float] | None = None) -> tuple[float, float, float]:
    """Value of f and its (min, max) over the corners of the inputs' rounding intervals.

    Every candidate is monotone in each input over the table's values, so corners bound it.
    """
    half = _HALF_UNIT if half is None else half
    names = list(inspect.signature(f).parameters)
    value = float(f(**{n: cells[n] for n in names}))
    corners = [
        float(f(**{n: cells[n] + s * half[n] for n, s in zip(names, signs, strict=True)}))
        for signs in itertools.product((-1, 1), repeat=len(names))
    ]
    return value, min(corners), max(corners)


def lts_candidates(paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each candidate LTS formula evaluated on Table 2 against the printed LTS column.

    One row per candidate (the first row, "printed LTS", holds the printed values). Columns:
    the seven architectures' values, max_abs_err, rows_within_rounding (how many rows'
    printed LTS lie in the range the formula reaches when each input varies within its
    printed rounding) and reproduces (all rows within rounding). From the printed cells no
    candidate reproduces the column; "(A_gain(BS) + std) x SR/100" matches 6 of 7 (all but
    PNASNet-B, whose printed A_gain cell is wrong: see `lts_candidates_per_run`).
    """
    paper = paper_table2() if paper is None else paper
    archs = list(paper.index)
    printed = paper["lts"].to_numpy(dtype=float)
    rows = {"printed LTS": dict(zip(archs, printed, strict=True))}
    rows["printed LTS"].update(max_abs_err=0.0, rows_within_rounding=len(archs))
    for name, f in LTS_CANDIDATES.items():
        ranges = [_range(f, _cells(paper.loc[a])) for a in archs]
        values = np.array([r[0] for r in ranges])
        inside = [
            lo - _LTS_HALF_UNIT <= p <= hi + _LTS_HALF_UNIT
            for (_, lo, hi), p in zip(ranges, printed, strict=True)
        ]
        rows[name] = dict(zip(archs, values, strict=True))
        rows[name].update(max_abs_err=float(np.abs(values - printed).max()),
                          rows_within_rounding=int(sum(inside)))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "candidate"
    out["rows_within_rounding"] = out["rows_within_rounding"].astype(int)
    out["reproduces"] = out["rows_within_rounding"] == len(archs)
    out.loc["printed LTS", "reproduces"] = True
    return out
