"""The suite's close says how many tests were skipped and why (tests/conftest.py's
``pytest_terminal_summary``), also under ``-q``, the project's addopts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from conftest import skip_summary

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
import pytest

@pytest.mark.skipif(True, reason="needs /usr/bin/chromium")
def test_browser_a(): pass

@pytest.mark.skipif(True, reason="needs /usr/bin/chromium")
def test_browser_b(): pass

def test_ray(): pytest.skip("needs ray")

def test_runs(): pass
'''


def _skipped(reason: str) -> SimpleNamespace:
    return SimpleNamespace(longrepr=("file.py", 1, f"Skipped: {reason}"))


def test_skip_summary_groups_reasons_most_frequent_first():
    reports = [_skipped("needs ray"), _skipped("needs chromium"), _skipped("needs chromium")]
    assert skip_summary(reports) == "3 skipped: needs chromium (2), needs ray (1)"
    assert skip_summary([]) is None


def test_closing_lines_name_the_skips_under_quiet(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert "3 skipped: needs /usr/bin/chromium (2), needs ray (1)" in lines[-2:], lines[-5:]
