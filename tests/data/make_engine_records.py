"""tests/data/engine_records.json: tiny searches through each engine, fingerprinted as
``test_engines_agree.fingerprint`` does, with the API of commit 2c1e0f1 (before the engines
shared ``engine/stage.py``). Run from a checkout of that commit:
``PYTHONPATH=. python tests/data/make_engine_records.py OUT.json``."""

import hashlib
import json
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lth_core.config import SearchConfig, TrainConfig
from lth_core.data import load_data
from lth_core.engine.search import ticket_search
from lth_core.engine.workers import search_in_workers
from lth_core.models import build
from lth_core.store import load_results

SPEC = "synthetic:600:200"
COLS = ["run", "stage", "density", "n_weights", "epochs", "best_epoch", "val_acc", "test_acc",
        "traj_len", "traj_len_2d", "best_val_acc_training"]


def cfg():
    return SearchConfig(stages=2, arc_pairs=2, arc_points=32, hidden_arc_points=16,
                        train=TrainConfig(lr=0.05, max_epochs=2, patience=2, batch_size=64))


def fingerprint(root, arch):
    df = load_results(root)
    df = df[df["arch"] == arch].sort_values(["run", "stage"])
    rows = []
    for _, r in df.iterrows():
        row = {c: (r[c].item() if hasattr(r[c], "item") else r[c]) for c in COLS}
        run = Path(root) / arch / f"run-{int(r['run']):03d}"
        row["history"] = json.loads((run / f"stage-{int(r['stage'])}.json").read_text())[
            "history"]
        with np.load(run / f"mask-stage-{int(r['stage'])}.npz") as z:
            row["mask_sha"] = hashlib.sha256(b"".join(
                z[k].tobytes() for k in sorted(z.files) if k != "index")).hexdigest()
        rows.append(row)
    return rows


def main(out):
    data = load_data(SPEC)
    res = {"host": socket.gethostname(), "torch": torch.__version__, "engines": {}}
    threads = torch.get_num_threads()
    for arch in ("lenet5", "resnet32"):
        def model_fn(arch=arch):
            return build(arch)

        with tempfile.TemporaryDirectory() as tmp:
            torch.set_num_threads(1)
            for kind, pop in (("single", 1), ("pop", 2)):
                ticket_search(model_fn, data, cfg(), name=arch, runs=2,
                              results=f"{tmp}/{kind}", device="cpu", population=pop,
                              progress=False)
            torch.set_num_threads(threads)
            search_in_workers(arch, SPEC, cfg(), runs=range(2), results=f"{tmp}/workers",
                              workers=2)
            res["engines"][f"{arch}/single"] = fingerprint(f"{tmp}/single", arch)
            res["engines"][f"{arch}/population"] = fingerprint(f"{tmp}/pop", arch)
            res["engines"][f"{arch}/workers"] = fingerprint(f"{tmp}/workers", arch)
            try:
                import ray

                from lth_core.engine.ray_search import search_on_ray
            except ImportError:
                continue
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
            try:
                search_on_ray(arch, data, cfg(), runs=2, results=f"{tmp}/ray", device="cpu",
                              population=1)
                search_on_ray(arch, data, cfg(), runs=2, results=f"{tmp}/raypop",
                              device="cpu", population=2)
            finally:
                ray.shutdown()
            res["engines"][f"{arch}/ray"] = fingerprint(f"{tmp}/ray", arch)
            res["engines"][f"{arch}/ray-population"] = fingerprint(f"{tmp}/raypop", arch)
    Path(out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
