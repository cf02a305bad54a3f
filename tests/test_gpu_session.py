"""The prepared device script, run with stand-ins for python3, nvidia-smi and timeout: it
parses, runs its steps in order (checks, LeNet-5, calibration, the rest of the plan, the
benchmark) and gives each its share of SESSION_S."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
echo "python3 $*" >> "$LOG"
case "$*" in
  *benchmarks.gpu_checks*) exit "${CHECKS_RC:-0}" ;;
  *benchmarks.gpu_campaign*) echo '{}' > "$OUT/campaign.json" ;;
esac
exit 0
"""
FAKE_TIMEOUT = """#!/usr/bin/env bash
echo "timeout $1" >> "$LOG"
shift
exec "$@"
"""


def run_session(tmp_path: Path, **env: str) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"python3": FAKE_PYTHON, "timeout": FAKE_TIMEOUT,
                       "nvidia-smi": "#!/usr/bin/env bash\necho 'NVIDIA H200, 143771 MiB'\n",
                       "nproc": "#!/usr/bin/env bash\necho 16\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log.txt"
    log.write_text("")
    out = tmp_path / "out"
    full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "OUT": str(out),
                "HOME": str(tmp_path), **env}
    subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full_env, check=True,
                   capture_output=True, timeout=60)
    return [shlex.split(line) for line in log.read_text().splitlines()]


def _after(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_steps_in_order_within_the_session(tmp_path):
    calls = run_session(tmp_path)
    steps = [(c[0], c[2]) if c[0] == "python3" and c[1] == "-m" else (c[0],) for c in calls]
    modules = [s[1] for s in steps if len(s) == 2]
    assert modules == ["benchmarks.gpu_checks", "benchmarks.gpu_campaign",
                       "benchmarks.calibrate", "benchmarks.gpu_campaign",
                       "benchmarks.search_throughput", "benchmarks.search_throughput"]
    mods = [c for c in calls if c[0] == "python3" and c[1] == "-m"]
    first, calib, later = mods[1], mods[2], mods[3]
    assert _after(first, "--plan") == "lenet5:50" and float(_after(first, "--budget-s")) <= 330
    assert "lenet5:" not in _after(later, "--plan")  # LeNet-5 had its own step
    assert _after(calib, "--arch") == "resnet32" and "--set" not in calib
    assert json_files(tmp_path) == {"campaign-lenet5.json", "campaign-later.json"}
    timeouts = [int(c[1]) for c in calls if c[0] == "timeout"]
    assert timeouts[0] == 90 and 130 <= timeouts[1] <= 150  # checks, calibration
    # the stand-ins take no time: the rest of the plan gets SESSION_S less the benchmark's
    assert 600 - 170 - 5 <= float(_after(later, "--budget-s")) <= 600 - 170
    assert sum(timeouts[2:]) <= 170


def json_files(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "out").glob("campaign*.json")}


@pytest.mark.parametrize("env", [{"CHECKS_RC": "1"}])
def test_failed_checks_turn_graphs_off_for_campaign_and_calibration(tmp_path, env):
    mods = [c for c in run_session(tmp_path, **env) if c[0] == "python3" and c[1] == "-m"]
    assert all("--no-cuda-graphs" in c for c in mods if c[2] == "benchmarks.gpu_campaign")
    (calib,) = [c for c in mods if c[2] == "benchmarks.calibrate"]
    assert _after(calib, "--set") == "cuda_graphs=false"


def test_calibration_shares_its_seconds_and_can_be_skipped(tmp_path):
    calls = run_session(tmp_path, CALIB="resnet32,mobilenet_v1", CALIB_S="100", BENCH_S="0",
                        PLAN="")
    archs = [_after(c, "--arch") for c in calls if "benchmarks.calibrate" in c]
    assert archs == ["resnet32", "mobilenet_v1"]
    assert [int(c[1]) for c in calls if c[0] == "timeout"][1:] == [50, 50]
    assert not any("search_throughput" in " ".join(c) for c in calls)
    calls = run_session(tmp_path, CALIB="")
    assert not any("benchmarks.calibrate" in c for c in calls)
    # under 20 s left: every step after the checks is skipped
    calls = run_session(tmp_path, SESSION_S="15")
    assert [c[2] for c in calls if c[0] == "python3" and c[1] == "-m"] == [
        "benchmarks.gpu_checks"]
