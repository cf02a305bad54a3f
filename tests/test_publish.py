"""The publishing workflow (.github/workflows/book.yml): it parses, builds the book with the
README's command on a push to main and deploys the built site to GitHub Pages.

The build itself (several minutes) is not run here; it is `make book`, whose parts the book
tests cover, and the workflow checks in CI that it trained nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
BUILD_COMMAND = "make book"  # the README's main job, quick profile by default


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _uses(job: dict) -> list[str]:
    return [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]


def _runs(job: dict) -> list[str]:
    return [s["run"].strip() for s in job["steps"] if "run" in s]


def test_runs_on_a_push_to_main(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write",
                                       "id-token": "write"}
    assert set(workflow["jobs"]) == {"build", "deploy"}


def test_build_job_builds_the_quick_book_from_the_committed_results(workflow):
    from lth_book.profiles import DEFAULT_PROFILE

    build = workflow["jobs"]["build"]
    uses, runs = _uses(build), _runs(build)
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert BUILD_COMMAND in runs
    assert runs.index("make venv") < runs.index(BUILD_COMMAND)
    # make book with nothing set: the default profile, results/, the data's default
    assert DEFAULT_PROFILE == "quick"
    make = subprocess.run(["make", "-n", "-o", ".venv/.installed", "book", "VENV=.venv"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "book/build.py" in make and "--profile" not in make and "--data" not in make
    assert "--out _build" in make
    # after the build: nothing trained, then the site is the Pages artifact
    check = next(s["run"] for s in build["steps"] if "git status --porcelain" in s.get("run", ""))
    assert 'test -z "$(git status --porcelain)"' in check
    assert _runs(build).index(BUILD_COMMAND) < _runs(build).index(check.strip())
    artifact = next(s for s in build["steps"]
                    if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert artifact["with"]["path"] == "_build/html"
    assert "actions/configure-pages" in uses


def test_deploy_job_deploys_the_artifact_to_pages(workflow):
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    assert _uses(deploy) == ["actions/deploy-pages"]
    step = deploy["steps"][0]
    assert step["id"] == "deployment"
    assert step["id"] in deploy["environment"]["url"]


def test_readme_publishes_with_the_workflows_command(workflow):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Publish the book", 1)[1].split("\n## ", 1)[0]
    assert ".github/workflows/book.yml" in section
    assert f"`{BUILD_COMMAND}`" in section
    for action in ("actions/upload-pages-artifact", "actions/deploy-pages"):
        assert action in section and action in WORKFLOW.read_text()
