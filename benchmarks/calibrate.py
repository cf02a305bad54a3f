"""Calibrate a recipe's epochs against the paper's dense accuracy, in one population.

    python -m benchmarks.calibrate --arch resnet32 --epochs 10,15,20,30,40 --replicates 2 \\
        --data .gpu-data/cifar10-jpeg.tar.gz --out $OUT/calibrate-resnet32.json

Every member is a dense stage 0 of the search (run ``j``'s initialisation and training seed,
PyTorch's default initialisation untouched) under the architecture's recipe, except for its
own ``max_epochs`` (``population.Member.max_epochs``: its cosine schedule's length and its
last epoch); ``--replicates`` runs per budget, each budget with the same runs, so budgets
compare paired. Each member's test accuracy (of its best-validation weights, as a stage
record's, no test-time augmentation) is set against the dense mean and std of the paper's
Table 2, and the fewest epochs whose mean reaches the paper's mean minus its std is chosen.
The evidence (every member, the recipe, the data, the device, the date) is written to
``--out`` as members finish, so a run stopped by a timeout keeps the budgets it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lth_core.config import ConfigError, SearchConfig, TrainConfig, default_train_config, to_dict
from lth_core.data import load_data
from lth_core.engine.population import Member, auto_population, train_population_stage
from lth_core.engine.seeding import derive_seed
from lth_core.engine.stage import init_model, run_seed
from lth_core.engine.train import TrainingDiverged, evaluate, resolve_device
from lth_core.models import build
from lth_core.provenance import provenance

try:  # a benchmark script may read the book's numbers; lth_core never does
    from lth_book.paper import paper_table2
except ImportError:  # run from the repository root without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
    from lth_book.paper import paper_table2


def paper_dense(arch: str) -> tuple[float, float]:
    """(mean, std) of the dense test accuracy the paper's Table 2 prints for ``arch``."""
    table = paper_table2()
    if arch not in table.index:
        raise ValueError(f"the paper's Table 2 has no {arch!r}; it has: "
                         f"{', '.join(table.index)}")
    row = table.loc[arch]
    return float(row["dense_test_acc_mean"]), float(row["dense_test_acc_std"])


def summarise(members: list[dict[str, Any]], paper: tuple[float, float]) -> dict[str, Any]:
    """Per budget: n, mean and std of the test accuracy and whether the mean reaches the
    paper's mean minus its std; ``chosen``: the fewest epochs that does (None: none)."""
    mean_p, std_p = paper
    budgets: dict[str, dict[str, Any]] = {}
    for e in sorted({m["max_epochs"] for m in members}):
        accs = [m["test_acc"] for m in members if m["max_epochs"] == e and "test_acc" in m]
        if not accs:
            continue
        mean = statistics.fmean(accs)
        budgets[str(e)] = {
            "n": len(accs), "test_acc_mean": round(mean, 3),
            "test_acc_std": round(statistics.stdev(accs), 3) if len(accs) > 1 else None,
            "minus_paper": round(mean - mean_p, 3), "reaches": mean >= mean_p - std_p}
    chosen = next((int(e) for e, b in budgets.items() if b["reaches"]), None)
    return {"budgets": budgets, "chosen_epochs": chosen,
            "rule": "fewest epochs whose mean test accuracy >= paper mean - paper std"}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` recipe overrides, typed by TrainConfig's fields (``lr=0.05``)."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, _, text = item.partition("=")
        if key not in fields or not text:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with a TrainConfig field "
                             f"({', '.join(fields)})")
        kind = type(getattr(TrainConfig(), key))
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: {key} takes true or false")
            out[key] = text.lower() in ("true", "1")
        else:
            try:
                out[key] = kind(text)
            except ValueError:
                raise ValueError(f"--set {item!r}: {key} takes a {kind.__name__}") from None
    return out


def calibrate(arch: str, epochs: list[int], replicates: int, data_spec: str,
              device: torch.device, out: Path | None, overrides: dict[str, Any] | None = None,
              seed: int = 0, log=print) -> dict[str, Any]:
    """Train the members, write and return the evidence."""
    start = time.monotonic()
    paper = paper_dense(arch)
    train = default_train_config(arch, **(overrides or {}))
    cfg = SearchConfig(stages=1, seed=seed, train=dataclasses.replace(
        train, max_epochs=max(epochs)))
    for e in epochs:  # every budget must be a valid recipe (warm-up <= epochs)
        dataclasses.replace(train, max_epochs=e)
    data = load_data(data_spec)
    model_fn = lambda: build(arch)  # noqa: E731
    plan = [(e, j) for j in range(replicates) for e in epochs]
    members = []
    for e, j in plan:
        s = run_seed(arch, j, cfg)  # the search's run j: its theta_init and stage-0 seed
        state = init_model(model_fn, s).state_dict()
        members.append(Member(state={k: v.clone() for k, v in state.items()}, masks=None,
                              seed=derive_seed(s, "stage", 0), max_epochs=e))
    evidence: dict[str, Any] = {
        "arch": arch, "what": "dense test accuracy per epoch budget (benchmarks.calibrate)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "paper_dense_test_acc": {"mean": paper[0], "std": paper[1]},
        "recipe": {k: v for k, v in to_dict(train).items() if k != "max_epochs"},
        "overrides": overrides or {}, "epochs": epochs, "replicates": replicates,
        "search_seed": seed, "data": {"name": data.name, "checksum": data.checksum,
                                      "train": len(data.train), "val": len(data.val),
                                      "test": len(data.test)},
        "provenance": provenance(device), "members": [], "seconds": None}

    def write() -> None:
        evidence.update(summarise(evidence["members"], paper))
        evidence["seconds"] = round(time.monotonic() - start, 1)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(evidence, indent=1) + "\n")

    model = build(arch).to(device)

    def finished(k: int, best_val: float, best_epoch: int, epochs_run: int, seconds: float,
                 state: dict[str, torch.Tensor]) -> None:
        e, j = plan[k]
        model.load_state_dict(state)
        acc = evaluate(model, data.test, data, device, train.eval_batch_size)
        evidence["members"].append({
            "max_epochs": e, "run": j, "test_acc": acc, "best_val_acc": best_val,
            "best_epoch": best_epoch, "epochs": epochs_run, "train_seconds": round(seconds, 1)})
        log(f"{arch} run {j}, {e} epochs: test {acc:.2f} % (paper {paper[0]:.2f} ± "
            f"{paper[1]:.2f}), best epoch {best_epoch}")
        write()

    size = min(len(members), auto_population(model_fn, cfg, device, len(members)))
    if device.type != "cuda":
        size = len(members)  # CPU: tiny checks; one population tests the path
    for g in range(0, len(members), size):
        group = list(range(g, min(g + size, len(members))))

        def on_epoch(i: int, st: dict[str, Any], group=group) -> None:
            if st["done"]:
                finished(group[i], st["best_val_acc"], st["best_epoch"], st["epoch"],
                         st["train_seconds"], st["best_state"])

        outs = train_population_stage(model_fn, [members[k] for k in group], data, cfg.train,
                                      device=device, on_epoch=on_epoch)
        for k, o in zip(group, outs, strict=True):
            if isinstance(o, TrainingDiverged):
                e, j = plan[k]
                evidence["members"].append({"max_epochs": e, "run": j, "diverged": str(o)})
                log(f"{arch} run {j}, {e} epochs: {o}")
    write()
    return evidence


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.calibrate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, help="architecture (one of Table 2's)")
    p.add_argument("--epochs", default="10,15,20,30,40", help="epoch budgets, comma-separated")
    p.add_argument("--replicates", type=int, default=2, help="runs per budget")
    p.add_argument("--data", required=True, help="data set: archive path, cifar10, synthetic")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--seed", type=int, default=0, help="the search's seed (runs derive theirs)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="recipe override, e.g. warmup_epochs=2 (repeatable)")
    p.add_argument("--out", type=Path, help="the evidence JSON (written as members finish)")
    args = p.parse_args(argv)
    try:
        epochs = sorted({int(t) for t in args.epochs.split(",") if t.strip()})
        if not epochs or epochs[0] < 1 or args.replicates < 1:
            raise ValueError("--epochs needs budgets >= 1 and --replicates >= 1")
        build(args.arch)  # the registry's one-line error for an unknown name
        paper_dense(args.arch)
        overrides = parse_overrides(args.set)
        device = resolve_device(args.device)
        ev = calibrate(args.arch, epochs, args.replicates, args.data, device, args.out,
                       overrides, args.seed, log=lambda m: print(m, flush=True))
    except (ValueError, ConfigError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps({"arch": ev["arch"], "chosen_epochs": ev["chosen_epochs"],
                      "budgets": ev["budgets"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
