"""A chapter in a real JupyterLab, as a researcher uses it: the live stage slider redraws.

``jupyter lab`` of the project's environment serves a temporary folder on 127.0.0.1 (its own
token; Jupyter's config, data and runtime folders, JupyterLab's settings and IPython's profile
in temporary folders, so only the environment's kernel spec and lab extensions, among them
ipywidgets' jupyterlab_widgets, are found). A copy of ``book/expressivity.ipynb``, its
parameters set to the smoke profile on one architecture whose results the test computed
beforehand (seconds; the kernel only reads them), runs in headless Debian Chromium driven by
Playwright. Moving the ipywidgets stage slider of ``ch.slider(...)`` with the keyboard must
change its readout and the figure in its Output. The browser may contact only 127.0.0.1.
The server and its kernels are stopped whatever happens. Skipped when /usr/bin/chromium or
Playwright is absent; the checks that the static book build gets no live widget need neither.
``make lab`` itself is started too (no browser): its server must list the project's kernel.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from test_book import ROOT, book_build
from test_book_site import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, NO_REQUEST_SCHEMES, SCREENSHOTS

CHAPTER = "expressivity.ipynb"  # a chapter with a stage slider (ch.slider)
ARCHS = ["lenet5"]  # smoke results of one architecture: stages 0 and 1
START_TIMEOUT_S = 120  # the server answering its API
RUN_TIMEOUT_MS = 240_000  # the kernel starting (torch) and running every cell
TIMEOUT_MS = 60_000  # one step in the page
PNG_SRC = re.compile(r"^data:image/png;base64,")

needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None,
    reason=f"needs {CHROMIUM} (apt-get install -y chromium) and Playwright's Python client")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """Smoke records of ``ARCHS``, computed here so the kernel in JupyterLab only reads them."""
    from lth_book.profiles import ensure_results

    root = tmp_path_factory.mktemp("results-smoke")
    ensure_results("smoke", results=root, archs=ARCHS, device="cpu")
    return root


def chapter_copy(root: Path, results: Path) -> Path:
    """``CHAPTER`` in ``root`` with its parameters set to the smoke profile and ``results``
    (appended to the parameters cell, where a reader would type them)."""
    import nbformat

    nb = nbformat.read(ROOT / "book" / CHAPTER, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += ("\n\n# the test: smoke profile, results computed beforehand\n"
                    f'profile = "smoke"\nresults_dir = {str(results)!r}\narchs = {ARCHS!r}\n'
                    f'device = "cpu"\nprefer_stored = False\nstored_results = {str(root)!r}\n')
    for c in nb.cells:  # a cell counts as run once JupyterLab numbers it
        if c.cell_type == "code":
            c.execution_count, c.outputs = None, []
    path = root / CHAPTER
    nbformat.write(nb, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (the kernels name their connection file,
    which lies in this server's own runtime folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmdline.replace("\0", " ") and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
    return pids


@dataclass
class Lab:
    """A running ``jupyter lab``: its URL, token, served folder and log."""

    url: str
    token: str
    root: Path
    log: Path
    proc: subprocess.Popen = field(repr=False)

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def api(self, path: str, method: str = "GET") -> int:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def get_json(self, path: str):
        req = urllib.request.Request(f"{self.url}{path}",
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())


def _settings(settings: Path) -> None:
    """JupyterLab settings of the test: every cell in the DOM (no windowing), no news."""
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                        "checkForUpdates": False},
    }.items():
        pkg, name = plugin.rsplit("/", 1)
        path = settings / pkg / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _stop(lab: Lab, runtime: Path) -> None:
    """Ask the server to shut down (it stops its kernels), then end its process group and
    any kernel of its runtime folder left behind."""
    proc = lab.proc
    if proc.poll() is None:
        try:
            lab.api("/api/shutdown", method="POST")
            proc.wait(timeout=30)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            pass
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:  # whatever is left in the server's group (started by it, not by the kernels)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in _pids_mentioning(str(runtime)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _isolated_env(base: Path) -> dict[str, str]:
    """The environment of a test's server: Jupyter's config, data and runtime folders,
    JupyterLab's settings and IPython's profile in ``base`` (so only the environment's own
    kernel specs and lab extensions are found); not the static-book variable."""
    from lth_book.setup import STATIC_BOOK_ENV

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "JPY_", "MAKEFLAGS", "MFLAGS"))
           and k != STATIC_BOOK_ENV}
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), IPYTHONDIR=str(base / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
               MPLCONFIGDIR=str(base / "matplotlib"), PYTHONUNBUFFERED="1")
    return env


def _wait_until(server: Lab, ready, timeout_s: float, what: str) -> None:
    """Poll ``ready(server)`` until it is true; fail with the server's log if the process
    exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.proc.poll() is not None:
            pytest.fail(f"jupyter lab exited {server.proc.returncode}:\n{server.log_tail()}")
        try:
            if ready(server):
                return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"jupyter lab did not {what} in {timeout_s} s:\n{server.log_tail()}")
        time.sleep(0.5)


@contextlib.contextmanager
def _running(cmd: list[str], cwd: Path, env: dict[str, str], base: Path, port: int,
             token: str, root: Path) -> Iterator[Lab]:
    """``cmd`` (a ``jupyter lab`` or what starts one) in a session of its own, its output in
    ``base/jupyterlab.log``; stopped, with its kernels, whatever happens."""
    log = base / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log, proc)
    try:
        yield server
    finally:
        _stop(server, Path(env["JUPYTER_RUNTIME_DIR"]))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, smoke_results) -> Iterator[Lab]:
    """``jupyter lab`` serving a temporary folder that holds the smoke copy of ``CHAPTER``."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    chapter_copy(root, smoke_results)
    _settings(base / "lab-settings")
    env = _isolated_env(base)
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # containers: the server refuses root without it
        cmd.append("--allow-root")
    with _running(cmd, root, env, base, port, token, root) as server:
        _wait_until(server, lambda s: s.api("/api/status") == 200, START_TIMEOUT_S, "answer")
        yield server


# The errors in the open notebook's outputs once its kernel is idle and every code cell ran
# (or one failed, which stops the others); null before
_RUN_STATE_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const done = cells.every(c => !c.model.sharedModel.getSource().trim()
                                || (c.model.executionCount !== null
                                    && !c.promptNode.textContent.includes('*')));
  const errors = cells.flatMap(c => c.model.outputs.toJSON())
    .filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue);
  if (!kernel || kernel.status !== 'idle' || !(done || errors.length)) return null;
  return errors;
}
"""

# Mark the cell whose code calls ch.slider( so that the test can find its widget
_MARK_SLIDER_CELL_JS = """
() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  const cell = cells.find(c => c.model.sharedModel.getSource().includes('ch.slider('));
  if (!cell) return false;
  cell.node.setAttribute('data-lth-test', 'stage-slider-cell');
  return true;
}
"""


_SLIDER_FIGURE = '[data-lth-test="stage-slider-cell"] .widget-vbox .widget-output img'
# The live slider's figure is a PNG other than ``before``
_NEW_FIGURE_JS = f"""
(before) => {{
  const img = document.querySelector('{_SLIDER_FIGURE}');
  const src = img && img.getAttribute('src');
  return !!src && src !== before && src.startsWith('data:image/png;base64,');
}}
"""


def _digest(src: str | None) -> str:
    return hashlib.sha256((src or "").encode()).hexdigest()[:12]


@needs_browser
def test_stage_slider_redraws_in_jupyterlab(lab):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect, sync_playwright

    other_hosts: list[str] = []
    errors: list[str] = []

    def local_only(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in NO_REQUEST_SCHEMES or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            other_hosts.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", local_only)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("websocket", lambda ws: urlsplit(ws.url).hostname in LOCAL_HOSTS
                    or other_hosts.append(ws.url))
            try:
                page.goto(f"{lab.url}/lab/tree/{CHAPTER}?token={lab.token}")
                page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell"
                                       " && window.jupyterapp.shell.currentWidget"
                                       " && window.jupyterapp.shell.currentWidget.content"
                                       " && window.jupyterapp.shell.currentWidget.content"
                                       ".widgets.length > 0")
                page.wait_for_function("() => window.jupyterapp.shell.currentWidget"
                                       ".sessionContext.isReady", timeout=RUN_TIMEOUT_MS)
                page.evaluate("() => window.jupyterapp.commands"
                              ".execute('notebook:run-all-cells')")
                state = page.wait_for_function(_RUN_STATE_JS, timeout=RUN_TIMEOUT_MS,
                                               polling=500).json_value()
                assert state == [], f"errors in the notebook's outputs: {state}"

                assert page.evaluate(_MARK_SLIDER_CELL_JS), f"no ch.slider( cell in {CHAPTER}"
                cell = page.locator('[data-lth-test="stage-slider-cell"]')
                widget = cell.locator(".widget-vbox").filter(has=page.locator(".widget-slider"))
                # the live slider of ch.slider, once
                expect(widget).to_have_count(1, timeout=TIMEOUT_MS)
                readout = widget.locator(".widget-slider .widget-readout")
                handle = widget.locator(".widget-slider .noUi-handle")
                image = widget.locator(".widget-output img")
                expect(image).to_be_visible(timeout=TIMEOUT_MS)
                expect(image).to_have_attribute("src", PNG_SRC, timeout=TIMEOUT_MS)
                expect(readout).to_have_text("0", timeout=TIMEOUT_MS)
                before = image.get_attribute("src")

                handle.focus()
                page.keyboard.press("ArrowRight")

                expect(readout).to_have_text("1", timeout=TIMEOUT_MS)
                redrawn = True
                try:  # the Output's figure is redrawn for stage 1
                    page.wait_for_function(_NEW_FIGURE_JS, arg=before, timeout=TIMEOUT_MS)
                except PlaywrightTimeoutError:
                    redrawn = False
                if not redrawn:
                    pytest.fail("the figure did not change after the slider moved to stage 1 "
                                f"(still the PNG of sha256 {_digest(image.get_attribute('src'))}"
                                f", stage 0's was {_digest(before)})", pytrace=False)
                assert not other_hosts, "requests to other hosts:\n" + "\n".join(other_hosts)
            except BaseException:
                print(f"jupyter lab log:\n{lab.log_tail()}\npage errors: {errors}")
                raise
            finally:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(PlaywrightError):  # keep the test's own error
                    page.screenshot(path=str(SCREENSHOTS / "jupyterlab-stage-slider.png"))
                context.close()
        finally:
            browser.close()


# -- static book versus live kernel (no browser) ------------------------------------------


def _draw(stage: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, stage])
    return fig


def test_chapter_slider_is_live_in_a_kernel_and_static_in_the_book_build(monkeypatch, tmp_path):
    """``ch.slider`` adds the ipywidgets slider where a kernel serves the page, not where
    book/build.py executes the chapters (its kernels get ``STATIC_BOOK_ENV``), nor in plain
    Python; the pre-rendered slider is shown in every case."""
    import ipywidgets

    from lth_book.profiles import get_profile
    from lth_book.setup import STATIC_BOOK_ENV, Page, live_widgets

    shown: list = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.delenv(STATIC_BOOK_ENV, raising=False)
    page = Page(profile=get_profile("smoke"), results_dir=tmp_path)

    def kinds(shell) -> list[str]:
        monkeypatch.setattr("IPython.get_ipython", lambda: shell)
        shown.clear()
        page.slider(_draw, [0, 1], "caption", "test-slider")
        return ["widget" if isinstance(o, ipywidgets.Widget) else "static" for o in shown]

    kernel = SimpleNamespace(kernel=object())  # an IPython shell with a kernel (JupyterLab)
    assert live_widgets() is False  # pytest: plain Python
    assert kinds(None) == ["static"]
    assert kinds(kernel) == ["static", "widget"]
    monkeypatch.setenv(STATIC_BOOK_ENV, "1")
    assert kinds(kernel) == ["static"]
    assert book_build.kernel_env()[STATIC_BOOK_ENV] == "1"


# -- make lab (no browser) -----------------------------------------------------------------

KERNEL_NAME = "lottery-book"  # the Makefile's LAB_KERNEL
MAKE_LAB_TIMEOUT_S = 300  # registering the kernel and the server answering, under load


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_the_chapters_with_the_project_kernel(tmp_path):
    """``make lab`` as a researcher types it (on a free port; the token from
    ``JUPYTER_TOKEN``): JupyterLab of this environment answers on 127.0.0.1, serves
    ``book/`` and lists the environment's kernel under the project's name; stopped, nothing
    of it is left running. ``-o`` keeps make from reinstalling the environment the suite runs
    in; a kernel spec the test registered is removed again."""
    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").is_file() or not (venv / "bin" / "python").exists():
        pytest.skip("not run from a virtual environment")
    spec_dir = venv / "share" / "jupyter" / "kernels" / KERNEL_NAME
    had_spec = spec_dir.exists()
    env = _isolated_env(tmp_path)
    port, token = _free_port(), secrets.token_hex(24)
    env["JUPYTER_TOKEN"] = token
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "-o", f"{venv}/.installed",
           "lab", f"VENV={venv}", f"LAB_PORT={port}", "LAB_ARGS=--ServerApp.port_retries=0"]

    def kernel_listed(server: Lab) -> bool:
        return KERNEL_NAME in server.get_json("/api/kernelspecs")["kernelspecs"]

    try:
        with _running(cmd, ROOT, env, tmp_path, port, token, ROOT / "book") as server:
            _wait_until(server, kernel_listed, MAKE_LAB_TIMEOUT_S,
                        f"list the {KERNEL_NAME} kernel")
            spec = server.get_json("/api/kernelspecs")["kernelspecs"][KERNEL_NAME]["spec"]
            assert spec["display_name"] == KERNEL_NAME
            assert Path(spec["argv"][0]).parent == venv / "bin", spec["argv"]
            names = {c["name"] for c in server.get_json("/api/contents/")["content"]}
            assert CHAPTER in names and "lth_book" in names, sorted(names)
            assert f"http://127.0.0.1:{port}/" in server.log_tail(20_000)
            group = server.proc.pid
        with pytest.raises(ProcessLookupError):  # the server's process group is gone
            for _ in range(50):
                os.killpg(group, 0)
                time.sleep(0.2)
        assert not _pids_mentioning(str(tmp_path / "runtime"))
    finally:
        if not had_spec:
            shutil.rmtree(spec_dir, ignore_errors=True)
