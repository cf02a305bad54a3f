"""Which trajectory-length definition gives the paper's scale? (a deviation, measured)

The paper's Table 2 prints dense trajectory lengths of 0.09 ± 0.03 for LeNet-5 but 48.16 for
ResNet32 and 264.60 for PNASNet-A, and LeNet-5's TL_gain as 0.003 ± 0.02 % while every other
architecture's spreads over ±12-21 %. It does not say which output the arc is measured on. Ours
(logits of an arc through two normalised test images, projected to 2-D) gives about 40 for
LeNet-5. This module measures the candidates side by side on the same trained networks:

* the arc: through two normalised test images (ours), through the same images as raw [0, 1]
  pixels, or a unit circle along two random orthonormal input directions (Raghu et al.);
* the output: logits or softmax probabilities;
* full output space or its 2-D PCA projection (the paper's Figure 1);
* the total length or the mean step (length / points).

``python -m lth_book.trajectory_scale`` trains LeNet-5 (its recipe, dense and one LAMP stage,
for a TL_gain) and ResNet32 (a few epochs: what a CPU allows) and writes the lengths to
``results/trajectory-scale/lengths.json``; the expressivity chapter reads that file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from lth_core.analysis.trajectory import arc_pairs, curve_length, output_arc, project_2d
from lth_core.config import SearchConfig, default_train_config
from lth_core.data import load_data, normalize
from lth_core.engine.seeding import derive_seed
from lth_core.engine.stage import init_model, run_seed
from lth_core.engine.train import evaluate, resolve_device, train_stage
from lth_core.models import build
from lth_core.provenance import provenance
from lth_core.pruning import apply_masks, lamp_masks
from lth_core.store import atomic_write_bytes

from .formats import name, num, pm
from .paper import paper_table2
from .profiles import RESULTS_DIR, SHARED_DATA

RESULT = RESULTS_DIR / "trajectory-scale" / "lengths.json"
ARCS = {"images": "two normalised test images (ours)",
        "raw": "the same two images as raw [0, 1] pixels",
        "unit": "unit circle on two random orthonormal input directions"}
OUTPUTS = {"logits": "logits", "softmax": "softmax probabilities"}
SPACES = {"2d": "2-D PCA projection", "full": "full output space"}
OURS = ("images", "logits", "2d")


def _definitions() -> list[tuple[str, str, str]]:
    return [(a, o, s) for a in ARCS for o in OUTPUTS for s in SPACES]


def key(arc: str, output: str, space: str) -> str:
    """The JSON key of a definition, e.g. ``images/logits/2d``."""
    return f"{arc}/{output}/{space}"


def unit_pairs(shape: tuple[int, ...], n_pairs: int, seed: int) -> Tensor:
    """(P, 2, *shape): per pair two orthonormal directions (Gaussian, Gram-Schmidt)."""
    g = torch.Generator().manual_seed(seed)
    flat = int(np.prod(shape))
    out = torch.empty(n_pairs, 2, flat, dtype=torch.float64)
    for p in range(n_pairs):
        u, v = torch.randn(2, flat, generator=g, dtype=torch.float64)
        u = u / u.norm()
        v = v - (v @ u) * u
        out[p, 0], out[p, 1] = u, v / v.norm()
    return out.float().view(n_pairs, 2, *shape)


def measure(model: nn.Module, arcs: dict[str, Tensor], n_points: int) -> dict[str, float]:
    """Mean length over each arc set's pairs, for every definition (one forward per pair)."""
    sums: dict[str, list[float]] = {key(*d): [] for d in _definitions() if d[0] in arcs}
    for arc_name, pairs in arcs.items():
        for pair in pairs:
            logits = output_arc(model, pair[0], pair[1], n_points).double()
            outs = {"logits": logits, "softmax": torch.softmax(logits, dim=1)}
            for o, out in outs.items():
                sums[key(arc_name, o, "full")].append(curve_length(out))
                sums[key(arc_name, o, "2d")].append(curve_length(project_2d(out)))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def _train(model: nn.Module, arch: str, data, epochs: int | None, masks, seed: int, device,
           at_epochs: set[int], arcs: dict[str, Tensor], n_points: int,
           log: Callable[[str], None]) -> dict[str, Any]:
    """Train one stage of ``arch``'s recipe (``epochs`` caps it), measuring at ``at_epochs``;
    the model ends with its best-validation weights, as a search's stage does."""
    overrides = {} if epochs is None else {"max_epochs": epochs}
    cfg = default_train_config(arch, **overrides)
    by_epoch: dict[str, dict[str, float]] = {}
    if 0 in at_epochs:
        by_epoch["0"] = measure(model, arcs, n_points)

    def on_epoch(state: dict[str, Any]) -> None:
        epoch = int(state["epoch"])
        if epoch in at_epochs:
            by_epoch[str(epoch)] = measure(model, arcs, n_points)
            log(f"{arch}: measured after epoch {epoch}")

    t0 = time.perf_counter()
    outcome = train_stage(model, masks, data, cfg, seed=seed, device=device, on_epoch=on_epoch)
    model.load_state_dict(outcome.state)
    test_acc = evaluate(model, data.test, data, device, cfg.eval_batch_size)
    final = measure(model, arcs, n_points)
    return {"recipe": {"lr": cfg.lr, "max_epochs": cfg.max_epochs},
                   "epochs": outcome.epochs, "best_epoch": outcome.best_epoch,
                   "test_acc": test_acc, "train_seconds": time.perf_counter() - t0,
                   "by_epoch": by_epoch, "final": final}


def compute(out: str | os.PathLike = RESULT, data_spec: str | None = None,
            resnet_epochs: int = 2, n_pairs: int = 8, n_points: int = 1000,
            lenet_epochs: int | None = None, threads: int = 1,
            archs: tuple[str, ...] = ("lenet5", "resnet32"),
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the networks, measure every definition, write and return the JSON record.

    LeNet-5 trains its full recipe unless ``lenet_epochs`` caps it (tests do). Only ``archs``
    are computed; the others are kept from the record already at ``out``, if any (each
    model's entry carries its own provenance)."""
    torch.set_num_threads(threads)
    device = resolve_device("auto")
    data = load_data(data_spec or str(SHARED_DATA))
    search = SearchConfig()
    prov = {**provenance(device), "data_name": data.name, "data_checksum": data.checksum,
            "threads": threads}
    old = load(out) if Path(out).exists() else None
    keep = {} if old is None or (old["n_pairs"], old["n_points"]) != (n_pairs, n_points) \
        else {a: {"provenance": old["provenance"], **e} for a, e in old["models"].items()}
    record: dict[str, Any] = {
        "what": "dense trajectory lengths under each candidate definition",
        "provenance": prov, "n_pairs": n_pairs, "n_points": n_points, "models": keep}
    raw = data.test.images.float() / 255.0
    for arch, epochs in (("lenet5", lenet_epochs), ("resnet32", resnet_epochs)):
        if arch not in archs:
            continue
        arc_seed = derive_seed(arch, "arcs", search.seed)  # the search's own arcs
        arcs = {"images": arc_pairs(normalize(data.test.images, data.mean, data.std),
                                    n_pairs, seed=arc_seed),
                "raw": arc_pairs(raw, n_pairs, seed=arc_seed),
                "unit": unit_pairs(tuple(raw.shape[1:]), n_pairs, seed=arc_seed)}
        seed = run_seed(arch, 0, search)  # run 0's initial weights and data order
        model = init_model(lambda a=arch: build(a), seed).to(device)
        theta_init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        at = {0, 1, 2, 5, 10, 20}
        log(f"{arch}: training the dense network")
        dense = _train(model, arch, data, epochs, None, seed, device, at, arcs, n_points, log)
        entry = {"provenance": prov, "recipe_max_epochs": default_train_config(arch).max_epochs,
                 "dense": dense}
        if arch == "lenet5":  # one LAMP stage, rewound: TL_gain under each definition,
            # before training (epoch 0: the rewound, pruned initial weights) and after
            masks = lamp_masks(model, search.prune_rate)
            model.load_state_dict(theta_init)
            apply_masks(model, masks)
            log(f"{arch}: training stage 1 (16 % pruned, rewound)")
            sparse = _train(model, arch, data, epochs, masks, derive_seed(seed, "stage", 1),
                            device, {0}, arcs, n_points, log)
            entry["stage1"] = sparse
        record["models"][arch] = entry
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
    return record


# ---------------------------------------------------------------------------- the chapter


def load(path: str | os.PathLike = RESULT) -> dict[str, Any] | None:
    """The stored record, or None when it has not been computed."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def _paper_dense() -> dict[str, float]:
    t = paper_table2()
    return {a: float(t.loc[a, "dense_traj_mean"]) for a in ("lenet5", "resnet32")}


def _paper_tl_gain_lenet5() -> tuple[float, float]:
    row = paper_table2().loc["lenet5"]
    return float(row["best_sparse_tl_gain_mean"]), float(row["best_sparse_tl_gain_std"])


def scale_table(record: dict[str, Any]) -> pd.DataFrame:
    """One row per definition: LeNet-5 and ResNet32 dense lengths (total and per point), their
    ratio against the paper's, LeNet-5's TL_gain after one stage, and how far each is off."""
    paper = _paper_dense()
    n = record["n_points"]
    lenet = record["models"]["lenet5"]
    resnet = record["models"]["resnet32"]["dense"]["final"]
    rows = []
    for d in _definitions():
        k = key(*d)
        le, re = lenet["dense"]["final"][k], resnet[k]
        gain = (lenet["stage1"]["final"][k] - le) / le * 100 if "stage1" in lenet else math.nan
        for per_point in (False, True):
            s = 1.0 / n if per_point else 1.0
            off = max(_factor(le * s, paper["lenet5"]), _factor(re * s, paper["resnet32"]))
            rows.append({"arc": ARCS[d[0]], "output": OUTPUTS[d[1]], "space": SPACES[d[2]],
                         "length": "mean step" if per_point else "total",
                         "lenet5": le * s, "resnet32": re * s, "ratio": re / le,
                         "lenet5_tl_gain": gain, "worst_factor": off, "ours": d == OURS
                         and not per_point})
    return pd.DataFrame(rows)


def _factor(ours: float, paper: float) -> float:
    """How many times apart two positive numbers are (>= 1)."""
    if ours <= 0 or paper <= 0:
        return math.inf
    return max(ours / paper, paper / ours)


def _label(k: str) -> str:
    arc, output, space = k.split("/")
    return f"{ARCS[arc]}, {OUTPUTS[output]}, {SPACES[space]}"


def _closest(lengths: dict[str, float], target: float) -> tuple[str, float]:
    k = min(lengths, key=lambda k: _factor(lengths[k], target))
    return k, lengths[k]


def scale_paragraph(record: dict[str, Any]) -> str:
    """The outcome in sentences whose numbers come from the record."""
    t = scale_table(record)
    paper = _paper_dense()
    p_ratio = paper["resnet32"] / paper["lenet5"]
    g_mean, g_std = _paper_tl_gain_lenet5()
    ours = t[t["ours"]].iloc[0]
    best = t.sort_values("worst_factor").iloc[0]
    ratios = t.drop_duplicates(["arc", "output", "space"])
    lo, hi = ratios["ratio"].min(), ratios["ratio"].max()
    gains = ratios["lenet5_tl_gain"].abs()
    lenet = record["models"]["lenet5"]
    res = record["models"]["resnet32"]["dense"]
    le = lenet["dense"]
    text = (
        f"Our definition gives {ours['lenet5']:.2f} for LeNet-5 (dense, "
        f"{le['test_acc']:.2f} % test accuracy) where the paper prints "
        f"{paper['lenet5']:.2f}, and {ours['resnet32']:.2f} for ResNet32 "
        f"(trained {res['epochs']} epochs on this CPU, {res['test_acc']:.2f} %) where the "
        f"paper prints {paper['resnet32']:.2f}. The paper's two numbers are "
        f"{p_ratio:.0f} times apart; over the {len(ratios)} definitions we measured, "
        f"ResNet32's length is {lo:.2f} to {hi:.2f} times LeNet-5's. "
        f"The closest single definition ({best['arc']}, {best['output']}, "
        f"{best['space']}, {best['length']} length) is still a factor "
        f"{best['worst_factor']:.0f} off one of the two. "
        f"LeNet-5's TL_gain after one trained pruning stage is {gains.min():.2f} % to "
        f"{gains.max():.2f} % in magnitude across the definitions, against the paper's "
        f"{g_mean:.3f} ± {g_std:.2f} % for its Best Sparse tickets.")
    init = le["by_epoch"].get("0")
    if init is not None:
        k_le, v_le = _closest(init, paper["lenet5"])
        k_rn, v_rn = _closest(res["final"], paper["resnet32"])
        text += (
            f" Untrained, at its initial weights, LeNet-5's lengths are "
            f"{min(init.values()):.4f} to {max(init.values()):.2f}; the closest to the "
            f"paper's {paper['lenet5']:.2f} is {v_le:.2f} ({_label(k_le)}), while the "
            f"closest to its ResNet32 {paper['resnet32']:.2f} is the trained ResNet32's "
            f"{v_rn:.2f} ({_label(k_rn)}).")
        rewound = lenet.get("stage1", {}).get("by_epoch", {}).get("0")
        if rewound is not None:
            g0 = [abs(rewound[k] - init[k]) / init[k] * 100 for k in init if init[k] > 0]
            text += (f" Pruning 16 % of LeNet-5's weights and rewinding, before any "
                     f"training, changes its length by {min(g0):.2f} % to {max(g0):.2f} % "
                     "across the definitions.")
    if best["worst_factor"] > 3:
        text += (" No definition we tried puts both printed numbers on one scale: the "
                 "paper's LeNet-5 lengths are not on the scale of its ResNet32 lengths under "
                 "any one of them, so the book compares only gains, never absolute lengths.")
    return text


def display_table(record: dict[str, Any]) -> pd.DataFrame:
    """The chapter's table: one row per definition (total lengths), the paper's row first."""
    paper = _paper_dense()
    g_mean, g_std = _paper_tl_gain_lenet5()
    t = scale_table(record)
    total, step = t[t["length"] == "total"], t[t["length"] == "mean step"]
    le, rn, gain = name("lenet5"), name("resnet32"), f"{name('lenet5')} TL_gain (%)"
    rows = [{"definition": "the paper (Table 2)", le: paper["lenet5"], rn: paper["resnet32"],
             "ratio": paper["resnet32"] / paper["lenet5"], gain: pm(g_mean, g_std),
             "factor off (total)": "", "factor off (mean step)": ""}]
    for (_, r), (_, s) in zip(total.iterrows(), step.iterrows(), strict=True):
        rows.append({"definition": f"{r['arc']}; {r['output']}; {r['space']}"
                                   + (" (ours)" if r["ours"] else ""),
                     le: r["lenet5"], rn: r["resnet32"], "ratio": r["ratio"],
                     gain: num(r["lenet5_tl_gain"]),
                     "factor off (total)": num(r["worst_factor"], 0),
                     "factor off (mean step)": num(s["worst_factor"], 0)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(RESULT), help="where the JSON record goes")
    parser.add_argument("--data", default=None, help="data spec (default: the JPEG copy)")
    parser.add_argument("--resnet-epochs", type=int, default=2,
                        help="ResNet32's training epochs (its recipe runs 40)")
    parser.add_argument("--pairs", type=int, default=8, help="arcs per definition")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", choices=["lenet5", "resnet32"], default=None,
                        help="recompute one network, keeping the other's stored entry")
    args = parser.parse_args(argv)
    archs = (args.only,) if args.only else ("lenet5", "resnet32")
    compute(args.out, args.data, args.resnet_epochs, args.pairs, threads=args.threads,
            archs=archs,
            log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))


if __name__ == "__main__":
    main()
