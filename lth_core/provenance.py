"""Where a number came from: code version, software, hardware and data, written into records."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

CHECKOUT = Path(__file__).resolve().parent.parent


@functools.cache
def git_commit() -> str:
    """The commit of the checkout lth_core runs from (``+dirty`` when it has changes)."""
    root = CHECKOUT
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def code_patch() -> bytes | None:
    """The changes of a dirty checkout against its commit (``git diff HEAD --binary`` of the
    tracked files, as ``git_commit`` counts them), or None when it is clean or not a git
    checkout. With it, ``git checkout <commit> && git apply <patch>`` rebuilds the code."""
    if not git_commit().endswith("+dirty"):
        return None
    try:
        return subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=CHECKOUT,
                              capture_output=True, timeout=30, check=True).stdout or None
    except (OSError, subprocess.SubprocessError):
        return None


def code_patch_sha256() -> str | None:
    """The sha256 of `code_patch`, which names its file beside the records."""
    patch = code_patch()
    return hashlib.sha256(patch).hexdigest() if patch else None


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A readable name of the hardware a result was computed on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict[str, Any]:
    return {
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device_name(device),
        "device_type": device.type,
        "host": platform.node(),
        "git_commit": git_commit(),
        "code_patch_sha256": code_patch_sha256(),
    }
