"""A results directory that keeps every finished stage and can be shared by many writers.

Layout (one folder per architecture and run)::

    DIR/<arch>/search.json               the config and data every run of <arch> used
    DIR/<arch>/code-<sha256>.patch       a dirty checkout's diff against its commit
    DIR/<arch>/run-007/stage-2.json      one record per (arch, run, stage)
    DIR/<arch>/run-007/mask-stage-2.npz  the mask pruning stage 2 produced (stage 3 trains it)
    DIR/<arch>/run-007/init.json         checksum of the run's initial weights
    DIR/<arch>/run-007/hidden-stage-2.npz  per-block 2D arcs (Figure 1), some runs only
    DIR/<arch>/run-007/ckpt/state.pt     resuming inside a stage (not committed to git)
    DIR/<arch>/run-007/.lock             held by the process computing that run

Records, masks and ``init.json`` are enough to continue a search on any machine: the initial
weights are regenerated from the run's seed and checked against the checksum.

Every file is written to a temporary name and renamed into place, so a reader (or a process
killed mid-write) never sees half a file. A run is computed by one process at a time: the lock
is an exclusively-created file, broken only when its owner is gone (dead pid on this host, or
no heartbeat for ``stale_after`` seconds from another host).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lth_core.config import setup_identity

RECORD_KEYS = ("arch", "run", "stage", "density", "val_acc", "test_acc", "traj_len",
               "traj_len_2d", "epochs", "best_epoch")

# The type and range of every record field the store and the metrics read: (type, low, high).
# A record outside it is corrupt: reported by name and recomputed, never counted.
_REAL = (int, float)
RECORD_SCHEMA: dict[str, tuple[type | tuple[type, ...], float | None, float | None]] = {
    "arch": (str, None, None), "run": (int, 0, None), "stage": (int, 0, None),
    "density": (_REAL, 0.0, 1.0), "val_acc": (_REAL, 0.0, 100.0),
    "test_acc": (_REAL, 0.0, 100.0), "traj_len": (_REAL, 0.0, None),
    "traj_len_2d": (_REAL, 0.0, None), "epochs": (int, 1, None), "best_epoch": (int, 0, None),
}
OPTIONAL_SCHEMA: dict[str, tuple[type | tuple[type, ...], float | None, float | None]] = {
    "n_weights": (int, 0, None), "best_val_acc_training": (_REAL, None, None),
    "wall_time_s": (_REAL, 0.0, None), "pruner": (str, None, None),
    "history": (list, None, None), "provenance": (dict, None, None),
}


SEARCH_META = "search.json"  # DIR/<arch>/search.json: what makes a folder a result set


def find_searches(root: str | os.PathLike) -> list[tuple[ResultsStore, str]]:
    """Every (store, arch) under ``root`` at any depth, by its search metadata file."""
    return [(ResultsStore(p.parent.parent), p.parent.name)
            for p in sorted(Path(root).rglob(SEARCH_META))]


class StoreError(ValueError):
    """The results path cannot be used (a file, unwritable, or holds other experiments)."""


def check_name(name: object) -> str:
    """``name`` if it can name a search's folder: one path component, not empty, not ``.``
    or ``..``, not hidden (a name with ``/`` or ``..`` would write elsewhere, and its
    records would not be found under the name)."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError(f"a search name must be a non-empty string, got {name!r}")
    bad = [c for c in name if c in "/\\" or not c.isprintable()]
    if bad or name.startswith(".") or name != name.strip():
        raise StoreError(f"search name {name!r} is not one plain folder name (no '/', '\\', "
                         "leading '.', surrounding spaces or control characters)")
    return name


class CorruptRecordWarning(UserWarning):
    """A record or checkpoint could not be read; it is ignored and recomputed."""


TMP_SUFFIX = ".tmp"
_TMP_OWNER = re.compile(r"\.(\d+)-([0-9a-f]{8})\.[^.]*" + re.escape(TMP_SUFFIX) + "$")


def _host_id() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _tmp_prefix(name: str) -> str:
    """A temporary file's name names its writer (pid and host), so that what a killed
    writer left behind can be told from what a live one is writing."""
    return f".{name}.{os.getpid()}-{_host_id()}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask can only be read by setting it


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path.name),
                               suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: follow the umask instead
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _stage_count(k: Any) -> int | None:
    """``k`` when it can be a number of stages (an int, not a bool), else None."""
    return k if isinstance(k, int) and not isinstance(k, bool) else None


def pack_masks(masks: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Masks as bit-packed arrays plus a JSON index: the layout of ``mask-stage-K.npz``, and
    what the Ray engine sends (small, and one format to read)."""
    names = sorted(masks)
    index = json.dumps({"names": names, "shapes": [list(masks[n].shape) for n in names]})
    return {"index": np.array(index),
            **{f"{i:03d}": np.packbits(masks[n].cpu().numpy().astype(bool).ravel())
               for i, n in enumerate(names)}}


def unpack_masks(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Inverse of ``pack_masks``; ValueError when the bits do not fill the shapes."""
    index = json.loads(str(arrays["index"]))
    out = {}
    for i, (n, shape) in enumerate(zip(index["names"], index["shapes"], strict=True)):
        count = int(np.prod(shape))
        bits = np.unpackbits(arrays[f"{i:03d}"], count=count)
        if bits.size != count:
            raise ValueError(f"{n}: {bits.size} bits for shape {shape}")
        out[n] = torch.from_numpy(bits.astype(bool).reshape(shape))
    return out


def sweep_temporaries(folder: Path, stale_after: float = 3600.0) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder``; the removed paths.

    A temporary file is left only when its writer died between creating and renaming it
    (``kill -9``); it is never part of a result. One whose writer is alive on this host is
    kept; one from another host (or of an older, unnamed form) is removed only once older
    than ``stale_after`` seconds.
    """
    removed = []
    host = _host_id()
    for tmp in folder.glob(f".*{TMP_SUFFIX}") if folder.is_dir() else ():
        owner = _TMP_OWNER.search(tmp.name)
        try:
            if owner and owner.group(2) == host:
                dead = not _pid_alive(int(owner.group(1)))
            else:
                dead = time.time() - tmp.stat().st_mtime > stale_after
            if dead:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # renamed or swept by another process meanwhile
            pass
    return removed


def _read_json_dict(path: Path, key: str, kind: type, what: str) -> dict[str, Any] | None:
    """A JSON object whose ``key`` is a ``kind``; None when the file is missing. ValueError
    (``what``) for anything else, OSError when unreadable."""
    if not path.exists():
        return None
    out = json.loads(path.read_text())
    if not isinstance(out, dict) or not isinstance(out.get(key), kind):
        raise ValueError(what)
    return out


def _read_search(path: Path, warn: bool = False) -> dict[str, Any] | None:
    try:
        return _read_json_dict(path, "config", dict, "not a search setup")
    except (OSError, ValueError) as err:
        if warn:
            _warn_corrupt(path, err)
        return None


def _load_torch(path: Path) -> Any:
    """A checkpoint or kept ticket (tensors only), or None when missing or, with a warning
    naming it, unreadable: it is then recomputed, never trusted."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many kinds on a damaged file
        _warn_corrupt(path, err)
        return None


def _warn_corrupt(path: Path, err: Exception) -> None:
    warnings.warn(f"corrupt file {path} ({type(err).__name__}: {err}); it will be recomputed",
                  CorruptRecordWarning, stacklevel=3)


def _check_field(key: str, value: Any,
                 spec: tuple[type | tuple[type, ...], float | None, float | None]) -> None:
    kind, low, high = spec
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{key} is {value!r}, not of type "
                         f"{'number' if kind is _REAL else kind.__name__}")
    if kind in (_REAL, int) and not math.isfinite(value):
        raise ValueError(f"{key} is {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        top = "inf" if high is None else high
        raise ValueError(f"{key} is {value!r}, outside [{low}, {top}]")


def check_record(rec: Any, path: Path | None = None) -> dict[str, Any]:
    """``rec`` if it follows ``RECORD_SCHEMA`` (and names the arch, run and stage its path
    does), else ValueError saying what is wrong."""
    if not isinstance(rec, dict):
        raise ValueError(f"a record is a JSON object, not {type(rec).__name__}")
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        raise ValueError(f"missing keys {missing}")
    for key, spec in RECORD_SCHEMA.items():
        _check_field(key, rec[key], spec)
    for key, spec in OPTIONAL_SCHEMA.items():
        if key in rec:
            _check_field(key, rec[key], spec)
    if rec["best_epoch"] > rec["epochs"]:
        raise ValueError(f"best_epoch {rec['best_epoch']} after its {rec['epochs']} epochs")
    if not isinstance(rec.get("provenance", {}).get("config", {}), dict):
        raise ValueError("provenance.config is not an object")
    if path is not None:  # a copied record names another run: it would count twice
        where = {"arch": path.parent.parent.name, "run": f"run-{rec['run']:03d}",
                 "stage": f"stage-{rec['stage']}"}
        found = {"arch": rec["arch"], "run": path.parent.name, "stage": path.stem}
        for key, want in where.items():
            if found[key] != want:
                raise ValueError(f"its {key} ({rec[key]!r}) is not that of its path")
    return rec


def _load_record(path: Path) -> dict[str, Any]:
    return check_record(json.loads(path.read_text()), path)


def read_record(path: Path) -> dict[str, Any] | None:
    """A stage record, or None (with a warning naming the file) when missing or corrupt
    (unreadable, or outside ``RECORD_SCHEMA``)."""
    if not path.exists():
        return None
    try:
        return _load_record(path)
    except (ValueError, OSError) as err:
        _warn_corrupt(path, err)
        return None


class ResultsStore:
    """Records, checkpoints and locks under one results directory."""

    def __init__(self, root: str | os.PathLike, stale_after: float = 3600.0):
        if not str(os.fspath(root)).strip():
            raise StoreError("results path is empty; name a folder (such as results)")
        self.root = Path(root)
        self.stale_after = stale_after
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"results path {self.root} is a file, not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=_tmp_prefix("probe"),
                                         suffix=TMP_SUFFIX)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise StoreError(f"results path {self.root} is not writable: {err.strerror}") from None

    # -- paths -------------------------------------------------------------------------------
    def arch_dir(self, arch: str) -> Path:
        """The folder of the search named ``arch`` (a name that is not one folder is refused)."""
        return self.root / check_name(arch)

    def run_dir(self, arch: str, run: int) -> Path:
        return self.arch_dir(arch) / f"run-{run:03d}"

    def record_path(self, arch: str, run: int, stage: int) -> Path:
        return self.run_dir(arch, run) / f"stage-{stage}.json"

    def checkpoint_path(self, arch: str, run: int) -> Path:
        return self.run_dir(arch, run) / "ckpt" / "state.pt"

    def mask_path(self, arch: str, run: int, stage: int) -> Path:
        return self.run_dir(arch, run) / f"mask-stage-{stage}.npz"

    def recorded_stages(self, arch: str, run: int, stages: int) -> int:
        """How many leading stages (of ``stages``) have a valid record."""
        k = 0
        while k < stages and self.read_record(arch, run, k) is not None:
            k += 1
        return k

    def runs(self, arch: str) -> list[int]:
        """The run numbers that have a folder under ``arch``."""
        return sorted(int(p.name[4:]) for p in self.arch_dir(arch).glob("run-[0-9]*")
                      if p.name[4:].isdigit())

    # -- search metadata ---------------------------------------------------------------------
    def search_path(self, arch: str) -> Path:
        return self.arch_dir(arch) / SEARCH_META

    def read_search(self, arch: str, warn: bool = False) -> dict[str, Any] | None:
        """The setup every run of ``arch`` used (``search.json``); None when missing or
        damaged (with ``warn``, a warning names it)."""
        return _read_search(self.search_path(arch), warn)

    def check_search(self, arch: str, meta: dict[str, Any], stages: int | None = None,
                     device_type: str | None = None) -> None:
        """Refuse to mix runs of different setups (config, data, model) in one folder.

        ``meta`` (``engine.search.search_meta``) holds what must match; more stages than
        before are allowed, finished runs then continue. It is checked against
        ``search.json`` and against the setup every stored record carries, so a deleted or
        damaged ``search.json`` is rebuilt from the records instead of letting another setup
        in. A folder whose search has not finished any stage (its first stage failed) takes
        the new setup: the old one's unfinished checkpoints and initial-weight checksums
        are removed, since they belong to the old setup.

        Configs are compared as ``config.setup_identity`` on ``device_type`` (the device
        the search trains on): fields that do not change its results there do not count.
        ``stages``, the K this search asks for, is the declared K of a ``search.json``
        written here (``declare_stages`` raises it later).
        """
        folder = self.arch_dir(arch)
        path = folder / SEARCH_META
        sweep_temporaries(folder, self.stale_after)
        old = self.read_search(arch, warn=True)
        if old is not None:
            old.pop("stages", None)  # the declared K may grow: not part of the setup
        records = sorted(folder.glob("run-*/stage-*.json"))
        if old is not None:
            diff = setup_difference(old, meta, device_type)
            if diff and not records and not self._live_locks(arch):
                warnings.warn(f"{folder} has no finished stage of its setup ({diff}); it now "
                              "holds this one, and the unfinished stages of the old one are "
                              "dropped", CorruptRecordWarning, stacklevel=2)
                self._drop_resume_files(arch)
                old = None
            elif diff:
                raise self._other_setup(arch, diff, path)
        setups, record_ks = _record_setups(records)
        for setup, where in setups:
            diff = setup_difference(setup, meta, device_type)
            if diff:
                raise self._other_setup(arch, diff, where)
        if old is None:
            if records:
                warnings.warn(f"{path} is missing or damaged; rebuilt from the setup its "
                              f"{len(records)} records carry", CorruptRecordWarning,
                              stacklevel=2)
            k = max([stages or 0, *record_ks])
            atomic_write_json(path, {**meta, **({"stages": k} if k else {})})

    def declare_stages(self, arch: str, stages: int, add_missing: bool = False) -> None:
        """Raise the K ``search.json`` declares to ``stages`` (never lower it). Called after a
        search ran, so that a refused one writes nothing; a ``search.json`` written before K
        was declared is left as it is, unless ``add_missing`` (the caller knows the K its
        runs are meant to reach: a campaign that advances them stage by stage)."""
        meta = self.read_search(arch)
        k = _stage_count(meta.get("stages", 0 if add_missing else None)) if meta else None
        if k is not None and stages > k:
            atomic_write_json(self.search_path(arch), {**meta, "stages": stages})

    def _other_setup(self, arch: str, diff: str, where: Path) -> StoreError:
        folder = self.root / arch
        if diff.startswith("model"):
            return StoreError(f"{folder} holds results of another model under the name "
                              f"{arch!r} ({diff}, in {where.name}); give this model another "
                              "name or use another results directory")
        return StoreError(f"{folder} holds results of another setup ({diff}); use another "
                          "--results directory")

    def _live_locks(self, arch: str) -> bool:
        """Whether another live process holds a run of ``arch``."""
        return any(not self._is_stale(lock) for lock in self.arch_dir(arch).glob("run-*/.lock"))

    def _drop_resume_files(self, arch: str) -> None:
        """Remove what resumes a search of an abandoned setup (no record is removed)."""
        for run in self.arch_dir(arch).glob("run-*"):
            for f in [run / "init.json", run / "ckpt" / "state.pt",
                      *run.glob("mask-stage-*.npz"), *run.glob("hidden-stage-*.npz")]:
                f.unlink(missing_ok=True)

    def write_code_patch(self, arch: str, patch: bytes | None) -> Path | None:
        """Keep a dirty checkout's diff beside the records it computes (named by its hash,
        which each record's provenance carries); nothing for a clean one."""
        if not patch:
            return None
        path = self.arch_dir(arch) / f"code-{hashlib.sha256(patch).hexdigest()}.patch"
        if not path.exists():
            atomic_write_bytes(path, patch)
        return path

    # -- records -----------------------------------------------------------------------------
    def write_record(self, record: dict[str, Any]) -> None:
        path = self.record_path(record["arch"], record["run"], record["stage"])
        atomic_write_json(path, record)

    def read_record(self, arch: str, run: int, stage: int) -> dict[str, Any] | None:
        return read_record(self.record_path(arch, run, stage))

    def run_records(self, arch: str, run: int) -> pd.DataFrame:
        """The valid records of one run, as ``load_results`` gives them."""
        return _records_frame(sorted(self.run_dir(arch, run).glob("stage-*.json")))

    def write_hidden(self, arch: str, run: int, stage: int,
                     arcs: list[tuple[str, np.ndarray]]) -> None:
        """Per-block 2D arcs, stored in order as ``000_<name>`` arrays."""
        atomic_write_bytes(self.run_dir(arch, run) / f"hidden-stage-{stage}.npz",
                           _npz_bytes({f"{i:03d}_{n}": a for i, (n, a) in enumerate(arcs)}))

    def read_hidden(self, arch: str, run: int, stage: int) -> list[tuple[str, np.ndarray]]:
        path = self.run_dir(arch, run) / f"hidden-stage-{stage}.npz"
        with np.load(path) as z:
            return [(k.split("_", 1)[1], z[k]) for k in sorted(z.files)]

    # -- kept tickets: a stage's trained weights (``run_search(keep_weights=...)``) ----------
    def ticket_path(self, arch: str, run: int, stage: int) -> Path:
        return self.run_dir(arch, run) / f"ticket-stage-{stage}.pt"

    def write_ticket(self, arch: str, run: int, stage: int, state: dict[str, torch.Tensor]) -> None:
        """The trained weights of a stage (a state_dict; pruned weights are exactly zero)."""
        atomic_torch_save(self.ticket_path(arch, run, stage),
                          {k: v.detach().cpu() for k, v in state.items()})

    def read_ticket(self, arch: str, run: int, stage: int) -> dict[str, torch.Tensor] | None:
        """A kept stage's trained weights, or None when not kept (or, with a warning,
        unreadable)."""
        return _load_torch(self.ticket_path(arch, run, stage))

    def keep_tickets(self, arch: str, run: int, stages: set[int]) -> None:
        """Remove the run's kept weights of every stage not in ``stages``."""
        for path in self.run_dir(arch, run).glob("ticket-stage-*.pt"):
            if int(path.stem.rsplit("-", 1)[1]) not in stages:
                path.unlink(missing_ok=True)

    # -- masks and initial weights: what continuing needs besides the records --------------
    def write_mask(self, arch: str, run: int, stage: int, masks: dict[str, torch.Tensor]) -> None:
        """The mask ``stage`` produced, bit-packed (LeNet-5: 8 KB)."""
        atomic_write_bytes(self.mask_path(arch, run, stage), _npz_bytes(pack_masks(masks)))

    def read_mask(self, arch: str, run: int, stage: int) -> dict[str, torch.Tensor] | None:
        """The mask ``stage`` produced, or None (with a warning naming the file) when missing
        or corrupt."""
        path = self.mask_path(arch, run, stage)
        if not path.exists():
            warnings.warn(f"mask file {path} is missing; stage {stage} of {arch} run {run} "
                          "will be recomputed", CorruptRecordWarning, stacklevel=2)
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return unpack_masks({k: z[k] for k in z.files})
        except Exception as err:  # any unreadable mask is recomputed, never trusted
            _warn_corrupt(path, err)
            return None

    def read_init(self, arch: str, run: int) -> dict[str, Any] | None:
        """The run's initial-weights checksum (``init.json``), or None when there is none or,
        with a warning naming the file, when it is damaged (it is then rewritten from the
        regenerated weights, so that run's earlier stages go unchecked: the warning says so)."""
        path = self.run_dir(arch, run) / "init.json"
        try:
            return _read_json_dict(path, "theta_init_sha256", str, "no theta_init_sha256")
        except (ValueError, OSError) as err:
            warnings.warn(f"ignoring damaged {path} ({type(err).__name__}: {err}); it is "
                          "rewritten from "
                          f"the weights regenerated from the run's seed, unchecked against "
                          "those its stored stages started from", CorruptRecordWarning,
                          stacklevel=2)
            return None

    def write_init(self, arch: str, run: int, info: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir(arch, run) / "init.json", info)

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, arch: str, run: int, state: dict[str, Any]) -> None:
        atomic_torch_save(self.checkpoint_path(arch, run), state)

    def load_checkpoint(self, arch: str, run: int) -> dict[str, Any] | None:
        return _load_torch(self.checkpoint_path(arch, run))

    # -- locks -------------------------------------------------------------------------------
    @contextmanager
    def lock(self, arch: str, run: int) -> Iterator[bool]:
        """Yield True when this process holds the run's lock, False when another live one does."""
        path = self.run_dir(arch, run) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        held = self._try_lock(path)
        if held:  # no one else writes in this run's folder now
            for folder in (path.parent, self.checkpoint_path(arch, run).parent):
                sweep_temporaries(folder, self.stale_after)
        try:
            yield held
        finally:
            if held:
                path.unlink(missing_ok=True)

    def heartbeat(self, arch: str, run: int) -> None:
        """Refresh the lock's time so other hosts do not take it for stale."""
        path = self.run_dir(arch, run) / ".lock"
        if path.exists():
            os.utime(path)

    def _try_lock(self, path: Path) -> bool:
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._is_stale(path):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return True
        return False

    def _is_stale(self, path: Path) -> bool:
        try:
            owner = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return True
        if owner.get("host") == socket.gethostname():
            return not _pid_alive(int(owner.get("pid", -1)))
        return age > self.stale_after


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def declared_stages(root: str | os.PathLike) -> dict[str, int]:
    """Per search under ``root`` (one level, as ``load_results`` reads it) the K its
    ``search.json`` declares; searches that declare none (written by earlier versions) are
    left out."""
    out = {}
    for path in sorted(Path(root).glob(f"*/{SEARCH_META}")):
        meta = _read_search(path)
        k = _stage_count(meta.get("stages")) if meta else None
        if k is not None and k >= 1:
            out[path.parent.name] = k
    return out


def _record_setups(paths: list[Path]) -> tuple[list[tuple[dict[str, Any], Path]], list[int]]:
    """The distinct setups (as in ``search.json``) the records at ``paths`` carry, each with
    one record that carries it, and the K (``stages``) each record's config asked for;
    unreadable records are left to ``read_record`` to report."""
    seen: dict[str, tuple[dict[str, Any], Path]] = {}
    ks = []
    for path in paths:
        try:
            rec = _load_record(path)
        except (OSError, ValueError):
            continue
        prov = rec.get("provenance", {})
        config = json.loads(json.dumps(prov.get("config", {})))
        if _stage_count(config.get("stages")) is not None:
            ks.append(config["stages"])
        setup: dict[str, Any] = {"name": rec["arch"]}
        if config:
            setup["config"] = config
        data = {k: prov[f"data_{k}"] for k in ("name", "checksum") if f"data_{k}" in prov}
        if data:
            setup["data"] = data
        if "model" in prov:
            setup["model"] = prov["model"]
        seen.setdefault(json.dumps(setup, sort_keys=True), (setup, path))
    return list(seen.values()), ks


def setup_difference(stored: dict[str, Any], wanted: dict[str, Any],
                     device_type: str | None = None,
                     where: tuple[str, str] = ("there", "now")) -> str | None:
    """The first way ``wanted`` differs from a ``stored`` setup ("prune_rate: 0.16 there,
    0.3 now", ``where`` naming the two), or None if they match; their configs compared as
    ``setup_identity`` on ``device_type``.

    Fields added to the configs after a folder was started do not count against it (the
    comparison only looks at what ``stored`` has), so ``stages`` is ignored when ``stored``
    has none, as in ``search.json``.
    """
    stored, wanted = (({**s, "config": setup_identity(s["config"], device_type)}
                       if isinstance(s.get("config"), dict) else s) for s in (stored, wanted))
    new = _restrict(wanted, stored)
    return None if new == stored else _first_difference(stored, new, where)


def _restrict(new: Any, old: Any) -> Any:
    """``new`` limited to the keys ``old`` has, recursively."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _restrict(new[k], old[k]) if k in new else None for k in old}
    return new


def _first_difference(old: Any, new: Any, where: tuple[str, str], prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), where, f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {old!r} {where[0]}, {new!r} {where[1]}"


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """One row per (arch, run, stage) from a results directory, provenance columns included.

    Corrupt records are reported by name (``CorruptRecordWarning``) and left out.
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"results path {root} is not a directory")
    return _records_frame(sorted(root.glob("*/run-*/stage-*.json")))


def _records_frame(paths: list[Path]) -> pd.DataFrame:
    """The valid records at ``paths`` as ``load_results`` returns them."""
    rows = []
    for rec_path in paths:
        rec = read_record(rec_path)
        if rec is None:
            continue
        prov = rec.pop("provenance", {})
        rec.pop("history", None)
        for k, v in prov.items():
            rec[k] = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
        rows.append(rec)
    columns = list(RECORD_KEYS)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df[columns + [c for c in df.columns if c not in columns]]
    return df.sort_values(["arch", "run", "stage"], kind="stable").reset_index(drop=True)
