"""Run chosen tests again on another CPU kernel path, in a fresh process.

Floats differ between kernel paths (ATen's AVX-512, AVX2 and scalar kernels; oneDNN's ISAs),
so equivalence tests assert tolerances measured on two paths. Re-running them on ATen's
scalar ("default") kernels and oneDNN's SSE4.1 ones keeps those tolerances honest on a
machine whose own path is another. The variables are read when torch loads, hence a new
process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEFAULT_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
ROOT = Path(__file__).resolve().parents[1]
# torch must really run its scalar kernels, else the re-run proves nothing
_RUN = ("import sys, torch, pytest; cap = torch.backends.cpu.get_cpu_capability(); "
        "assert cap == 'DEFAULT', f'ATen still runs {cap} kernels'; "
        "sys.exit(pytest.main(sys.argv[1:]))")


def run_under_default_kernels(node_ids: list[str]) -> None:
    """Run pytest ``node_ids`` (relative to the repository root) with ``DEFAULT_KERNELS`` set;
    fail with the tail of their output unless every one passes. Skips when this process
    already runs on those kernels (the re-run would repeat it)."""
    if all(os.environ.get(k) == v for k, v in DEFAULT_KERNELS.items()):
        pytest.skip("this process already runs on the default kernels")
    proc = subprocess.run([sys.executable, "-c", _RUN, "-p", "no:cacheprovider", *node_ids],
                          cwd=ROOT, env={**os.environ, **DEFAULT_KERNELS},
                          capture_output=True, text=True, timeout=600)
    out = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, out
    summary = proc.stdout.strip().splitlines()[-1]
    assert "skipped" not in summary and "deselected" not in summary, out
