"""Which stored results the book shows: per architecture, the largest budget the project has.

Results computed on larger budgets (more runs, a lent GPU) are committed under ``results/``
in folders of their own (``results/h100/``, ...). A chapter computes or reads the reader's
own run through ``profiles.ensure_results`` and then asks ``best_available`` whether a stored
set of the *same setup* (same recipe, prune rate and pruner; real data for a real-data run,
synthetic for a synthetic one) holds more complete runs. If so, the chapter shows that set,
labelled with its provenance, and the reader's run beside it. Sets of different runs are
never merged: run ``r`` of two sets starts from the same seed, so they are not independent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lth_core.config import to_dict
from lth_core.store import find_searches, load_results, setup_difference

# more stages than any search has: ``recorded_stages`` counts up to the first missing one
_ANY_STAGES = 10_000


def is_synthetic(data_name: object) -> bool:
    """Whether records of this data name come from ``lth_core.data``'s synthetic data."""
    return str(data_name).startswith("synthetic")


def _synthetic_records(df: pd.DataFrame) -> bool:
    return bool(len(df)) and is_synthetic(df["data_name"].iloc[0])


@dataclass(frozen=True)
class ResultSet:
    """One architecture's runs in one results folder (``root/<arch>/run-NNN/...``)."""

    root: Path
    arch: str
    config: dict
    data_name: str
    runs: dict[int, int]  # run -> number of consecutive stages 0, 1, ... stored

    def complete_runs(self, stages: int) -> list[int]:
        return sorted(r for r, k in self.runs.items() if k >= stages)

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.data_name)


def find_result_sets(root: str | os.PathLike, arch: str | None = None) -> list[ResultSet]:
    """Every results set under ``root`` (any depth: each folder holding an architecture's
    ``search.json``), optionally of one architecture; runs and stages as the store reads them."""
    sets = []
    for store, name in find_searches(root):
        if arch is not None and name != arch:
            continue
        info = store.read_search(name)
        if info is None:
            continue  # an unreadable set is not a candidate; load_results reports records
        runs = {r: store.recorded_stages(name, r, _ANY_STAGES) for r in store.runs(name)}
        sets.append(ResultSet(store.root, name, info.get("config", {}),
                              info.get("data", {}).get("name", ""), runs))
    return sets


@dataclass
class Shown:
    """What a chapter shows (``df``) and, per architecture, where it came from (``sources``)."""

    df: pd.DataFrame
    own: pd.DataFrame
    sources: pd.DataFrame  # one row per arch: where shown, how many runs, yours
    roots: dict[str, Path]  # arch -> results folder its shown records (and arcs) are read from
    configs: dict[str, object]
    search_root: Path

    @property
    def preferred(self) -> list[str]:
        """Architectures shown from a larger stored set instead of the reader's run."""
        return list(self.sources.loc[self.sources["larger_budget"], "arch"])

    def markdown(self) -> str:
        """Where each architecture's records come from, architectures of one source together."""
        groups: dict[str, list[str]] = {}
        for row in self.sources.itertuples(index=False):
            if row.larger_budget and row.shown_from == row.your_run_from:
                text = (f"all {row.runs_shown} complete runs stored in `{row.shown_from}` "
                        f"({row.hardware}), a larger budget than the {row.your_runs} runs your "
                        "profile asks for; your runs are among them and shown on their own "
                        "where a chapter compares them.")
            elif row.larger_budget:
                text = (f"shown from `{row.shown_from}` ({row.runs_shown} runs, {row.hardware}),"
                        f" a larger budget than your run (`{row.your_run_from}`, "
                        f"{row.your_runs} runs), which is shown beside it where a chapter "
                        "compares them.")
            else:
                text = (f"your run, `{row.your_run_from}` ({row.your_runs} runs, "
                        f"{row.hardware}); no stored set of the same setup has more runs.")
            groups.setdefault(text, []).append(row.arch)
        lines = [f"- **{', '.join(archs)}**: {text}" for text, archs in groups.items()]
        return "**Results shown**\n\n" + "\n".join(lines)

    def dense_spreads(self) -> pd.DataFrame:
        """Per architecture, the dense accuracy's spread from the same-setup set with the most
        dense runs, where that set has more than the shown records (for the null model)."""
        rows = []
        for arch, cfg in self.configs.items():
            mine = self.df[(self.df["arch"] == arch) & (self.df["stage"] == 0)]
            found = largest_dense_set(arch, cfg, search_root=self.search_root,
                                      synthetic=_synthetic_records(mine))
            if found is not None and len(found[1]) > len(mine):
                root, dense = found
                rows.append({"arch": arch, "dense_runs": len(dense),
                             "sigma": float(dense["test_acc"].std(ddof=1)),
                             "dense_mean": float(dense["test_acc"].mean()),
                             "hardware": "; ".join(sorted(set(map(str, dense["device"])))),
                             "source": _label(root, self.search_root)})
        cols = ["arch", "dense_runs", "sigma", "dense_mean", "hardware", "source"]
        return pd.DataFrame(rows, columns=cols).set_index("arch")


def _label(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve().parent))
    except ValueError:
        return str(path)


def best_available(
    own: pd.DataFrame,
    configs: dict[str, object],
    *,
    own_root: str | os.PathLike,
    stages: int,
    search_root: str | os.PathLike,
    prefer: bool = True,
) -> Shown:
    """The reader's records ``own``, each architecture swapped for a larger stored set if any.

    ``configs`` maps each architecture to the SearchConfig the reader's run used. A candidate
    set under ``search_root`` must have the same setup, the same kind of data (real or
    synthetic) and more runs with all ``stages`` stages than the reader's run; the one with
    the most such runs wins. ``prefer=False`` shows the reader's run only.
    """
    own_root = Path(own_root)
    search_root = Path(search_root)
    parts, rows, roots = [], [], {}
    for arch, cfg in configs.items():
        mine = own[own["arch"] == arch]
        synthetic = _synthetic_records(mine)
        n_own = int((mine.groupby("run")["stage"].nunique() >= stages).sum()) if len(mine) else 0
        best, best_runs = None, []
        if prefer and search_root.is_dir():
            wanted = to_dict(cfg)
            for s in find_result_sets(search_root, arch):
                done = s.complete_runs(stages)
                if (len(done) > max(n_own, len(best_runs)) and s.synthetic == synthetic
                        and not setup_difference(s.config, wanted)):
                    best, best_runs = s, done
        if best is None:
            shown, src = mine, own_root
        else:
            d = load_results(best.root)
            shown = d[(d["arch"] == arch) & d["run"].isin(best_runs) & (d["stage"] < stages)]
            src = best.root
        roots[arch] = src
        parts.append(shown)
        rows.append({"arch": arch, "larger_budget": best is not None,
                     "shown_from": _label(src, search_root),
                     "runs_shown": int(shown["run"].nunique()),
                     "hardware": "; ".join(sorted(set(map(str, shown["device"])))) or "n/a",
                     "your_run_from": _label(own_root, search_root), "your_runs": n_own})
    df = pd.concat(parts, ignore_index=True) if parts else own.iloc[:0]
    return Shown(df.reset_index(drop=True), own, pd.DataFrame(rows), roots, dict(configs),
                 search_root)


def largest_dense_set(arch: str, config: object, *, search_root: str | os.PathLike,
                      synthetic: bool = False) -> tuple[Path, pd.DataFrame] | None:
    """(folder, stage-0 records) of the same-setup set with the most dense runs (any K).

    Dense-only sets (a search stopped after stage 0) still measure the run-to-run spread of
    the dense accuracy, which the null model needs, far better than a handful of runs.
    """
    wanted = to_dict(config)
    best, n_best = None, 0
    root = Path(search_root)
    if not root.is_dir():
        return None
    for s in find_result_sets(root, arch):
        n = sum(1 for k in s.runs.values() if k >= 1)
        if n > n_best and s.synthetic == synthetic and not setup_difference(s.config, wanted):
            best, n_best = s, n
    if best is None:
        return None
    d = load_results(best.root)
    return best.root, d[(d["arch"] == arch) & (d["stage"] == 0)].reset_index(drop=True)
