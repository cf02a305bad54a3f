"""A winning ticket as a model: the trained weights of a run's stage with its mask applied.

``load_ticket`` gives the model of a stored stage: from the weights a search kept
(``run_search(keep_weights="best" | "all")``), or else retrained deterministically from
theta_init times the stored mask with the run's seed. ``export_ticket`` writes it as a plain
state_dict with its masks, as a model carrying ``torch.nn.utils.prune`` reparametrisations
(fine-tuning keeps the mask), or as ONNX.
"""

from __future__ import annotations

import functools
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lth_core.analysis.metrics import ticket_stage
from lth_core.config import search_config_from_dict
from lth_core.data import Dataset
from lth_core.engine.search import evaluation_pairs
from lth_core.engine.stage import StageJob, compute_stage, trained_mask
from lth_core.engine.train import resolve_device
from lth_core.models import build, check_arch
from lth_core.pruning import Masks
from lth_core.store import ResultsStore, atomic_torch_save, atomic_write_bytes, read_record

FORMATS = ("state_dict", "prune", "onnx")


class TicketError(ValueError):
    """No such run or stage, or no winning ticket to load; one line."""


def load_ticket(results: str | os.PathLike, name: str, run: int, stage: str | int = "best",
                *, model_fn: Callable[[], nn.Module] | None = None,
                data: Dataset | None = None, device: str | torch.device = "cpu",
                select_on: str = "test") -> tuple[nn.Module, Masks, dict[str, Any]]:
    """The ticket of ``run``'s ``stage`` (``"best"``, ``"sparsest"`` or K) of the search
    ``name`` under ``results``: the model with the stage's trained weights (pruned ones
    exactly zero), its masks, and the stage's record.

    ``model_fn`` builds the model (default: the registered architecture ``name``). Without
    kept weights the stage is retrained from theta_init times its mask with the run's seed
    (a warning says so), which needs ``data``.
    """
    if not Path(results).is_dir():
        raise TicketError(f"results path {results} is not a directory")
    store = ResultsStore(results)
    if not store.run_dir(name, run).is_dir():
        raise TicketError(f"no run {run} of {name!r} in {results}")
    try:
        k = ticket_stage(store.run_records(name, run), stage, select_on)
    except ValueError as err:
        raise TicketError(str(err)) from None
    record = read_record(store.record_path(name, run, k))
    if model_fn is None:
        check_arch(name)
        model_fn = functools.partial(build, name)
    model = model_fn()
    masks = trained_mask(store, name, run, k, lambda: model)
    if masks is None:
        raise TicketError(f"the mask of stage {k} of run {run} is not stored")
    state = store.read_ticket(name, run, k)
    if state is None:
        if data is None:
            raise TicketError(f"the weights of stage {k} of run {run} were not kept; give "
                              "the data to retrain it (or search with keep_weights)")
        warnings.warn(f"{name} run {run} stage {k}: weights not kept, retrained from "
                      "theta_init and its mask with the run's seed", stacklevel=2)
        cfg = search_config_from_dict(json.loads(json.dumps(record["provenance"]["config"])))
        init = store.read_init(name, run) or {}
        job = StageJob(run, k, masks, new=False, init_sha256=init.get("theta_init_sha256"),
                       keep=True)
        res = compute_stage(model_fn, data, evaluation_pairs(data, name, cfg), cfg,
                            name=name, jobs=[job], device=resolve_device(device),
                            population=False)[0]
        if res.init_mismatch or res.error:
            raise TicketError(res.error or f"run {run}: theta_init differs from the stored "
                              "one (another torch version?)")
        state = res.weights
    model.load_state_dict(state)
    return model.to(device), masks, record


def export_ticket(model: nn.Module, masks: Masks, out: str | os.PathLike,
                  fmt: str = "state_dict") -> Path:
    """Write a ticket: ``state_dict`` (``{"state_dict", "masks"}``), ``prune`` (the model
    with ``prune.custom_from_mask`` on every masked weight, saved whole with ``torch.save``;
    load it with ``weights_only=False``) or ``onnx`` (needs the onnx package)."""
    path = Path(out)
    model = model.cpu().eval()
    if fmt == "state_dict":
        blob: Any = {"state_dict": model.state_dict(), "masks": masks}
    elif fmt == "prune":
        from torch.nn.utils import prune

        modules = dict(model.named_modules())
        for n, m in masks.items():
            owner, _, param = n.rpartition(".")
            prune.custom_from_mask(modules[owner], param, m.to(torch.bool))
        blob = model
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise TicketError("--format onnx needs the onnx package (pip install onnx)") from None
        buf = io.BytesIO()
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), buf, dynamo=False)
        atomic_write_bytes(path, buf.getvalue())
        return path
    else:
        raise TicketError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    atomic_torch_save(path, blob)
    return path
