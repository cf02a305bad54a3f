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

RECORD_KEYS = ("arch", "run", "stage", "density", "val_acc", "test_acc", "traj_len",
               "traj_len_2d", "epochs", "best_epoch")


SEARCH_META = "search.json"  # DIR/<arch>/search.json: what makes a folder a result set


def find_searches(root: str | os.PathLike) -> list[tuple[ResultsStore, str]]:
    """Every (store, arch) under ``root`` at any depth, by its search metadata file."""
    return [(ResultsStore(p.parent.parent), p.parent.name)
            for p in sorted(Path(root).rglob(SEARCH_META))]


class StoreError(ValueError):
    """The results path cannot be used (a file, unwritable, or holds other experiments)."""


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _warn_corrupt(path: Path, err: Exception) -> None:
    warnings.warn(f"corrupt file {path} ({type(err).__name__}: {err}); it will be recomputed",
                  CorruptRecordWarning, stacklevel=3)


def read_record(path: Path) -> dict[str, Any] | None:
    """A stage record, or None (with a warning naming the file) when missing or corrupt."""
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            raise ValueError(f"missing keys {missing}")
        return rec
    except (ValueError, OSError) as err:
        _warn_corrupt(path, err)
        return None


class ResultsStore:
    """Records, checkpoints and locks under one results directory."""

    def __init__(self, root: str | os.PathLike, stale_after: float = 3600.0):
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
    def run_dir(self, arch: str, run: int) -> Path:
        return self.root / arch / f"run-{run:03d}"

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
        return sorted(int(p.name[4:]) for p in (self.root / arch).glob("run-[0-9]*")
                      if p.name[4:].isdigit())

    # -- search metadata ---------------------------------------------------------------------
    def search_path(self, arch: str) -> Path:
        return self.root / arch / SEARCH_META

    def read_search(self, arch: str) -> dict[str, Any] | None:
        """The config and data every run of ``arch`` used; None if absent or unreadable."""
        try:
            return json.loads(self.search_path(arch).read_text())
        except (OSError, ValueError):
            return None

    def check_search(self, arch: str, meta: dict[str, Any]) -> None:
        """Refuse to mix runs of different configs or data in one folder; record the first.

        ``meta`` holds what must match (config without ``stages``, data identity). More stages
        than before are allowed: finished runs then continue.
        """
        path = self.search_path(arch)
        sweep_temporaries(path.parent, self.stale_after)
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError as err:
                _warn_corrupt(path, err)
                old = None
            if old is not None:  # engine settings recorded by earlier versions do not count
                old.get("config", {}).get("train", {}).pop("cuda_graphs", None)
            diff = setup_difference(old, meta) if old is not None else None
            if diff:
                raise StoreError(f"{self.root / arch} holds results of another setup ({diff}); "
                                 "use another --results directory")
            if old is not None:
                return
        atomic_write_bytes(path, json.dumps(meta, indent=1, sort_keys=True).encode())

    def code_patch_path(self, arch: str, sha256: str) -> Path:
        return self.root / arch / f"code-{sha256}.patch"

    def write_code_patch(self, arch: str, patch: bytes | None) -> Path | None:
        """Keep a dirty checkout's diff beside the records it computes (named by its hash,
        which each record's provenance carries); nothing for a clean one."""
        if not patch:
            return None
        path = self.code_patch_path(arch, hashlib.sha256(patch).hexdigest())
        if not path.exists():
            atomic_write_bytes(path, patch)
        return path

    # -- records -----------------------------------------------------------------------------
    def write_record(self, record: dict[str, Any]) -> None:
        path = self.record_path(record["arch"], record["run"], record["stage"])
        atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True).encode())

    def read_record(self, arch: str, run: int, stage: int) -> dict[str, Any] | None:
        return read_record(self.record_path(arch, run, stage))

    def write_hidden(self, arch: str, run: int, stage: int,
                     arcs: list[tuple[str, np.ndarray]]) -> None:
        """Per-block 2D arcs, stored in order as ``000_<name>`` arrays."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **{f"{i:03d}_{n}": a for i, (n, a) in enumerate(arcs)})
        atomic_write_bytes(self.run_dir(arch, run) / f"hidden-stage-{stage}.npz", buf.getvalue())

    def read_hidden(self, arch: str, run: int, stage: int) -> list[tuple[str, np.ndarray]]:
        path = self.run_dir(arch, run) / f"hidden-stage-{stage}.npz"
        with np.load(path) as z:
            return [(k.split("_", 1)[1], z[k]) for k in sorted(z.files)]

    # -- masks and initial weights: what continuing needs besides the records --------------
    def write_mask(self, arch: str, run: int, stage: int, masks: dict[str, torch.Tensor]) -> None:
        """The mask ``stage`` produced, bit-packed (LeNet-5: 8 KB)."""
        names = sorted(masks)
        arrays = {f"{i:03d}": np.packbits(masks[n].cpu().numpy().astype(bool).ravel())
                  for i, n in enumerate(names)}
        index = json.dumps({"names": names, "shapes": [list(masks[n].shape) for n in names]})
        buf = io.BytesIO()
        np.savez_compressed(buf, index=np.array(index), **arrays)
        atomic_write_bytes(self.mask_path(arch, run, stage), buf.getvalue())

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
                index = json.loads(str(z["index"]))
                out = {}
                for i, (n, shape) in enumerate(zip(index["names"], index["shapes"],
                                                   strict=True)):
                    count = int(np.prod(shape))
                    bits = np.unpackbits(z[f"{i:03d}"], count=count)
                    if bits.size != count:
                        raise ValueError(f"{n}: {bits.size} bits for shape {shape}")
                    out[n] = torch.from_numpy(bits.astype(bool).reshape(shape))
            return out
        except Exception as err:  # any unreadable mask is recomputed, never trusted
            _warn_corrupt(path, err)
            return None

    def read_init(self, arch: str, run: int) -> dict[str, Any] | None:
        path = self.run_dir(arch, run) / "init.json"
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except (ValueError, OSError) as err:
            _warn_corrupt(path, err)
            return None

    def write_init(self, arch: str, run: int, info: dict[str, Any]) -> None:
        atomic_write_bytes(self.run_dir(arch, run) / "init.json",
                           json.dumps(info, indent=1, sort_keys=True).encode())

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, arch: str, run: int, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path(arch, run), buf.getvalue())

    def load_checkpoint(self, arch: str, run: int) -> dict[str, Any] | None:
        path = self.checkpoint_path(arch, run)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any unreadable checkpoint is recomputed, never trusted
            _warn_corrupt(path, err)
            return None

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


def setup_difference(stored: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first way ``wanted`` differs from a ``stored`` setup, or None if they match.

    Fields added to the configs after a folder was started do not count against it (the
    comparison only looks at what ``stored`` has), so ``stages`` is ignored when ``stored``
    has none, as in ``search.json``.
    """
    new = _restrict(wanted, stored)
    return None if new == stored else _first_difference(stored, new)


def _restrict(new: Any, old: Any) -> Any:
    """``new`` limited to the keys ``old`` has, recursively."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _restrict(new[k], old[k]) if k in new else None for k in old}
    return new


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """One row per (arch, run, stage) from a results directory, provenance columns included.

    Corrupt records are reported by name (``CorruptRecordWarning``) and left out.
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"results path {root} is not a directory")
    rows = []
    for rec_path in sorted(root.glob("*/run-*/stage-*.json")):
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
