"""Every engine computes the records it computed before the engines shared one stage step.

``data/engine_records.json`` holds tiny LeNet-5 and ResNet32 searches through each engine
(one process, a population, CPU workers, Ray, Ray populations) as the code of commit
2c1e0f1 computed them (``data/make_engine_records.py``, run in a checkout of it). On the
machine that made the file the records must be equal to the last bit; elsewhere floats
differ between CPUs, so integers and masks are exact and accuracies within one example,
lengths and losses within 1e-3 relative.
"""

from __future__ import annotations

import functools
import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from lth_core.config import SearchConfig, TrainConfig
from lth_core.data import load_data
from lth_core.models import build
from lth_core.provenance import cpu_model
from lth_core.store import load_results

GOLDEN = Path(__file__).parent / "data" / "engine_records.json"
SPEC = "synthetic:600:200"
EXACT = ["run", "stage", "density", "n_weights", "epochs", "best_epoch", "mask_sha"]
CLOSE = ["traj_len", "traj_len_2d"]
ACC = ["val_acc", "test_acc", "best_val_acc_training"]


def config() -> SearchConfig:
    return SearchConfig(stages=2, arc_pairs=2, arc_points=32, hidden_arc_points=16,
                        train=TrainConfig(lr=0.05, max_epochs=2, patience=2, batch_size=64))


def fingerprint(root: Path, arch: str) -> list[dict]:
    """What a search's records say, per (run, stage), and a hash of each stored mask."""
    df = load_results(root)
    df = df[df["arch"] == arch].sort_values(["run", "stage"])
    rows = []
    for _, r in df.iterrows():
        row = {c: r[c].item() if hasattr(r[c], "item") else r[c]
               for c in EXACT[:-1] + CLOSE + ACC}
        run = root / arch / f"run-{int(r['run']):03d}"
        row["history"] = json.loads((run / f"stage-{int(r['stage'])}.json").read_text())[
            "history"]
        with np.load(run / f"mask-stage-{int(r['stage'])}.npz") as z:
            row["mask_sha"] = hashlib.sha256(b"".join(
                z[k].tobytes() for k in sorted(z.files) if k != "index")).hexdigest()
        rows.append(row)
    return rows


def engines(tmp: Path, arch: str, search) -> dict[str, list[dict]]:
    """``search(name, results, **engine)`` through every engine; their fingerprints."""
    data = load_data(SPEC)
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker and Ray task has
    try:
        search(data, tmp / "single", device="cpu", population=1)
        search(data, tmp / "population", device="cpu", population=2)
    finally:
        torch.set_num_threads(threads)
    search(data, tmp / "workers", workers=2)
    kinds = ["single", "population", "workers"]
    try:
        import ray
    except ImportError:
        ray = None
    if ray is not None:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            search(data, tmp / "ray", device="cpu", ray="local", population=1)
            search(data, tmp / "ray-population", device="cpu", ray="local", population=2)
        finally:
            ray.shutdown()
        kinds += ["ray", "ray-population"]
    for kind in kinds:
        out[f"{arch}/{kind}"] = fingerprint(tmp / kind, arch)
    return out


def _compare(got: list[dict], want: list[dict], exact: bool, n_val: int, n_test: int) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if exact:
            assert g == w
            continue
        assert {k: g[k] for k in EXACT} == {k: w[k] for k in EXACT}
        assert abs(g["test_acc"] - w["test_acc"]) <= 100.0 / n_test + 1e-9
        for k in ("val_acc", "best_val_acc_training"):
            assert abs(g[k] - w[k]) <= 100.0 / n_val + 1e-9
        for k in CLOSE:
            assert abs(g[k] - w[k]) <= 1e-3 * abs(w[k])
        for hg, hw in zip(g["history"], w["history"], strict=True):
            assert abs(hg["train_loss"] - hw["train_loss"]) <= 1e-3 * abs(hw["train_loss"])


@pytest.mark.parametrize("arch", ["lenet5", "resnet32"])
def test_engines_compute_the_records_they_computed_before(arch, tmp_path):
    from lth_core.engine.search import run_search

    golden = json.loads(GOLDEN.read_text())
    same = (golden["host"], golden.get("cpu"), golden["torch"]) == (
        socket.gethostname(), cpu_model(), torch.__version__)

    def search(data, root, **engine):
        run_search(functools.partial(build, arch), data, config(), name=arch, runs=2,
                   results=root, progress=False, **engine)

    got = engines(tmp_path, arch, search)
    data = load_data(SPEC)
    for key, rows in got.items():
        _compare(rows, golden["engines"][key], same, len(data.val), len(data.test))
