"""The paper's metrics (Section 2.1) from a table of per-stage ticket-search records.

Input: one row per (arch, run, stage) with columns arch, run, stage (0 = dense), density,
val_acc, test_acc (percent) and a trajectory-length column. A winning ticket is a sparse stage
whose selection accuracy is >= the dense one of the same run; gains are always reported on test
accuracy, so `select_on="val"` gives the honest variant where the test set is not used to choose.
"""

from __future__ import annotations

import json
import math

import pandas as pd

BASE_COLUMNS = ("arch", "run", "stage", "density", "val_acc", "test_acc")
KINDS = ("dense", "best_sparse", "sparsest_matching")
LABELS = {"dense": "Dense", "best_sparse": "Best Sparse", "sparsest_matching": "Sparsest Matching"}
_SELECT = {"test": "test_acc", "val": "val_acc"}
_WINNER_FIELDS = ("stage", "density", "test_acc", "val_acc", "traj", "a_gain", "tl_gain")


def _check(df: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"results table is missing column(s): {', '.join(missing)}")
    if df.empty:
        raise ValueError("results table has no rows")
    dup = df.duplicated(["arch", "run", "stage"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"duplicate stage {row['stage']} for arch={row['arch']} run={row['run']}")


def _dense_row(g: pd.DataFrame, arch: str, run: int) -> pd.Series:
    dense = g[g["stage"] == 0]
    if dense.empty:
        raise ValueError(f"run has no stage 0 (dense) row: arch={arch} run={run}")
    return dense.iloc[0]


def _gain(new: float, base: float) -> float:
    """Relative change in percent, (new - base) / base * 100."""
    return (new - base) / base * 100.0


def _mean(x: pd.Series) -> float:
    """Mean; NaN for an empty set. NaN entries propagate, so a missing measurement shows."""
    v = x.to_numpy(dtype=float)
    return float(v.mean()) if len(v) else math.nan


def _std(x: pd.Series) -> float:
    """Sample std (ddof=1); NaN with fewer than 2 values."""
    v = x.to_numpy(dtype=float)
    return float(v.std(ddof=1)) if len(v) >= 2 else math.nan


def run_summary(
    df: pd.DataFrame, select_on: str = "test", traj: str = "traj_len_2d"
) -> pd.DataFrame:
    """One row per (arch, run): dense numbers, success, and the Best Sparse / Sparsest Matching.

    Columns: arch, run, dense_{test_acc,val_acc,traj,a_gain,tl_gain} (gains are 0), success,
    n_winning, and {best_sparse,sparsest_matching}_{stage,density,test_acc,val_acc,traj,a_gain,
    tl_gain}.

    Winners: stages k >= 1 with sel_acc >= dense sel_acc (sel = test or val accuracy).
    Best Sparse: highest sel_acc among winners (tie -> higher stage); Sparsest Matching: lowest
    density among winners (tie -> higher stage). Accuracies and A_gain are on test accuracy;
    winner fields are NaN for a run without winners.
    """
    if select_on not in _SELECT:
        raise ValueError(f"select_on must be 'test' or 'val', got {select_on!r}")
    _check(df, BASE_COLUMNS + (traj,))
    sel = _SELECT[select_on]
    rows = []
    for (arch, run), g in df.groupby(["arch", "run"], sort=False):
        dense = _dense_row(g, arch, run)
        winners = g[(g["stage"] >= 1) & (g[sel] >= dense[sel])]
        row = {
            "arch": arch,
            "run": run,
            "dense_test_acc": float(dense["test_acc"]),
            "dense_val_acc": float(dense["val_acc"]),
            "dense_traj": float(dense[traj]),
            "dense_a_gain": 0.0,
            "dense_tl_gain": 0.0,
            "success": not winners.empty,
            "n_winning": len(winners),
        }
        picks = {
            "best_sparse": winners.sort_values([sel, "stage"], ascending=False),
            "sparsest_matching": winners.sort_values(["density", "stage"], ascending=[True, False]),
        }
        for kind, ranked in picks.items():
            if ranked.empty:
                row.update({f"{kind}_{k}": math.nan for k in _WINNER_FIELDS})
                continue
            w = ranked.iloc[0]
            row.update(
                {
                    f"{kind}_stage": int(w["stage"]),
                    f"{kind}_density": float(w["density"]),
                    f"{kind}_test_acc": float(w["test_acc"]),
                    f"{kind}_val_acc": float(w["val_acc"]),
                    f"{kind}_traj": float(w[traj]),
                    f"{kind}_a_gain": _gain(w["test_acc"], dense["test_acc"]),
                    f"{kind}_tl_gain": _gain(w[traj], dense[traj]),
                }
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    for kind in ("best_sparse", "sparsest_matching"):  # float so NaN marks "no winner"
        out[f"{kind}_stage"] = out[f"{kind}_stage"].astype(float)
    return out


SELECTED = {"best": "best_sparse", "sparsest": "sparsest_matching"}  # lth ticket --stage


def ticket_stage(records: pd.DataFrame, stage: str | int, select_on: str = "test") -> int:
    """The stage ``stage`` names in one run's records: K itself, or the run's Best Sparse
    (``"best"``) or Sparsest Matching (``"sparsest"``) ticket, chosen as Table 2 chooses.
    ValueError (one line) when there is no such stage."""
    if records.empty:
        raise ValueError("the run has no records")
    if isinstance(stage, int) and not isinstance(stage, bool):
        if stage not in set(records["stage"]):
            raise ValueError(f"stage {stage} is not recorded (stages "
                             f"{', '.join(map(str, sorted(records['stage'])))})")
        return stage
    if stage not in SELECTED:
        raise ValueError(f"stage must be best, sparsest or a stage number, got {stage!r}")
    row = run_summary(records, select_on=select_on).iloc[0]
    k = row[f"{SELECTED[stage]}_stage"]
    if pd.isna(k):
        raise ValueError(f"run {int(row['run'])} found no winning ticket (no pruned stage "
                         "matched the dense one); name a stage number instead")
    return int(k)


def search_stages(df: pd.DataFrame, declared: dict[str, int] | None = None) -> dict[str, int]:
    """K per arch: the search's ``declared`` K (``lth_core.store.declared_stages``) where
    given, else the stages its records were asked for (``stages`` in their config, when the
    table has a ``config`` column); at least as many as any run recorded.

    A search continued stage by stage (one call per stage) leaves records whose config says
    1, 2, 3: their largest is not the K it aims at, so a declared K comes first.
    """
    k = (df.groupby("arch", sort=False)["stage"].max() + 1).astype(int).to_dict()
    declared = declared or {}
    if "config" in df.columns:
        for (arch, cfg), _ in df.groupby(["arch", "config"], sort=False):
            stages = json.loads(cfg).get("stages") if isinstance(cfg, str) else None
            if arch not in declared:
                k[arch] = max(k[arch], int(stages or 0))
    for arch, stages in declared.items():
        if arch in k:
            k[arch] = max(k[arch], int(stages))
    return k


def complete_runs(df: pd.DataFrame, declared: dict[str, int] | None = None
                  ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of the runs that recorded all K stages of their arch (``search_stages``), and
    per arch the number of incomplete runs left out (archs with none are not named).

    An unfinished run has no record of the stages it has not reached yet; counted, it would
    pass for a run whose ticket search failed and lower SR, A_gain and LTS. So these come from
    complete runs only, and a report says how many runs it left out.
    """
    stages = search_stages(df, declared)
    recorded = df.groupby(["arch", "run"], sort=False)["stage"].agg(lambda s: set(s.astype(int)))
    done = {key: set(range(stages[key[0]])) <= got for key, got in recorded.items()}
    keep = [done[key] for key in zip(df["arch"], df["run"], strict=True)]
    left_out: dict[str, int] = {}
    for (arch, _), ok in done.items():
        if not ok:
            left_out[arch] = left_out.get(arch, 0) + 1
    return df[keep].reset_index(drop=True), left_out


def _arch_order(seen: list[str], order: list[str] | None) -> list[str]:
    if order is None:
        return seen
    unknown = [a for a in order if a not in seen]
    if unknown:
        raise ValueError(f"order names architectures not in the results: {', '.join(unknown)}")
    return list(order) + [a for a in seen if a not in order]


def table2(
    df: pd.DataFrame,
    select_on: str = "test",
    traj: str = "traj_len_2d",
    order: list[str] | None = None,
) -> pd.DataFrame:
    """Table 2 of the paper: one row per arch (index), SR, LTS and mean/std per model kind.

    Dense statistics are over all runs (its gains are 0 by definition); Best Sparse and Sparsest
    Matching statistics are over the successful runs only. LTS = mean Best Sparse A_gain x SR/100
    (the printed definition); it is 0 when no run succeeds, since then TS brings nothing.
    An architecture with no pruned stage stored (K = 1) has no SR or LTS: both are NaN.
    """
    s = run_summary(df, select_on=select_on, traj=traj)
    pruned = set(df.loc[df["stage"] > 0, "arch"])
    rows = {}
    for arch in _arch_order(list(s["arch"].unique()), order):
        a = s[s["arch"] == arch]
        won = a[a["success"]]
        sr = float(a["success"].mean() * 100.0) if arch in pruned else float("nan")
        row: dict[str, float] = {"n_runs": len(a), "sr": sr}
        for kind in KINDS:
            runs = a if kind == "dense" else won
            for m in ("traj", "tl_gain", "test_acc", "a_gain"):
                row[f"{kind}_{m}_mean"] = _mean(runs[f"{kind}_{m}"])
                row[f"{kind}_{m}_std"] = _std(runs[f"{kind}_{m}"])
        row["lts"] = 0.0 if sr == 0 else row["best_sparse_a_gain_mean"] * sr / 100.0
        if arch not in pruned:
            row["lts"] = float("nan")
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    out["n_runs"] = out["n_runs"].astype(int)
    first = ["n_runs", "sr", "lts"]
    return out[first + [c for c in out.columns if c not in first]]


def tl_gain_by_stage(df: pd.DataFrame, traj: str = "traj_len_2d") -> pd.DataFrame:
    """Per (arch, stage): mean/std over runs of TL_gain of stage k vs the run's stage 0 (Fig. 6)."""
    _check(df, ("arch", "run", "stage", traj))
    parts = []
    for (arch, run), g in df.groupby(["arch", "run"], sort=False):
        base = _dense_row(g, arch, run)[traj]
        parts.append(g.assign(tl_gain=_gain(g[traj], base)))
    gains = pd.concat(parts)
    rows = []
    for (arch, stage), g in gains.groupby(["arch", "stage"], sort=False):
        rows.append(
            {
                "arch": arch,
                "stage": int(stage),
                "n_runs": len(g),
                "tl_gain_mean": _mean(g["tl_gain"]),
                "tl_gain_std": _std(g["tl_gain"]),
            }
        )
    out = pd.DataFrame(rows)
    arch_rank = {a: i for i, a in enumerate(df["arch"].unique())}
    out["rank"] = out["arch"].map(arch_rank)
    return out.sort_values(["rank", "stage"]).drop(columns="rank").reset_index(drop=True)


def _pm(mean: float, std: float) -> str:
    fmt = lambda v: "n/a" if math.isnan(v) else f"{v:.2f}"
    return f"{fmt(mean)} ± {fmt(std)}"


def format_table2(t: pd.DataFrame) -> str:
    """Plain-text rendering of `table2` in the layout of the paper's Table 2."""
    header = [
        "Architecture",
        "Network Type",
        "Trajectory Length",
        "Trajectory Length Gain %",
        "Test Accuracy",
        "Accuracy Gain %",
        "Success Rate",
        "LTS Score",
    ]
    lines = [header]
    for arch, r in t.iterrows():
        for kind in KINDS:
            first = kind == "dense"
            lines.append(
                [
                    str(arch) if first else "",
                    LABELS[kind],
                    *(
                        _pm(r[f"{kind}_{m}_mean"], r[f"{kind}_{m}_std"])
                        for m in ("traj", "tl_gain", "test_acc", "a_gain")
                    ),
                    ("n/a" if math.isnan(r["sr"]) else f"{r['sr']:.0f}%") if first else "",
                    ("n/a" if math.isnan(r["lts"]) else f"{r['lts']:.4f}") if first else "",
                ]
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
