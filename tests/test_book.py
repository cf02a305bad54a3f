"""The executable book builds: every notebook of _toc.yml runs under the smoke profile and the
site renders without referring to other hosts.

The book is built once per test session (fixture ``built_book``, shared with
tests/test_book_site.py) through the entry point of ``make book PROFILE=smoke``
(book/build.py), into a temporary folder. Setting LTH_BOOK_BUILT to the OUT folder of an
earlier build (``_build`` after ``make book PROFILE=smoke``) reuses it instead.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_build_module():
    """book/build.py as a module (it is a script, not part of lth_core)."""
    name = "lth_book_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


book_build = load_build_module()
DOCS = book_build.toc_docnames(ROOT)
NOTEBOOKS = [str(p) for p in book_build.toc_notebooks(ROOT)]


@dataclass
class BuiltBook:
    out: Path  # OUT folder of book/build.py
    rc: int
    log: str
    seconds: float

    @property
    def html(self) -> Path:
        return self.out / "html"

    @property
    def stage(self) -> Path:
        return self.out / "book-src"

    def require_success(self) -> None:
        if self.rc != 0:
            pytest.fail(f"book/build.py exited {self.rc}; end of its log:\n{self.log[-6000:]}",
                        pytrace=False)


_BUILT: dict[str, BuiltBook] = {}


def build_book_once(tmp_path_factory) -> BuiltBook:
    """Build the book at most once per session, whichever test module asks first."""
    if "book" in _BUILT:
        return _BUILT["book"]
    prebuilt = os.environ.get("LTH_BOOK_BUILT")
    if prebuilt:
        _BUILT["book"] = BuiltBook(Path(prebuilt).resolve(), 0, "(prebuilt)", 0.0)
        return _BUILT["book"]
    out = tmp_path_factory.mktemp("book") / "_build"
    cmd = [sys.executable, str(ROOT / "book" / "build.py"), "--profile", "smoke",
           "--out", str(out), "--results", str(out / "results"), "--device", "cpu",
           "--keep-going"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - t0
    (out.parent / "build.log").write_text(proc.stdout)
    _BUILT["book"] = BuiltBook(out, proc.returncode, proc.stdout, seconds)
    return _BUILT["book"]


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BuiltBook:
    return build_book_once(tmp_path_factory)


def read_nb(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


# ---------------------------------------------------------------------------------------


def test_toc_lists_existing_chapters():
    assert DOCS, "_toc.yml lists no document"
    assert NOTEBOOKS, "_toc.yml lists no notebook"
    assert len(set(DOCS)) == len(DOCS), f"a chapter is listed twice: {DOCS}"


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(nb):
    cells = read_nb(ROOT / nb)["cells"]
    with_outputs = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and c["outputs"]]
    assert not with_outputs, f"{nb} is committed with outputs in cells {with_outputs}"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb} needs exactly one code cell tagged 'parameters'"


def test_build_succeeds(built_book):
    built_book.require_success()
    assert (built_book.html / "index.html").is_file()


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_notebook_executed_without_errors(built_book, nb):
    executed = built_book.stage / nb
    assert executed.is_file(), f"no executed copy of {nb}; log:\n{built_book.log[-3000:]}"
    doc = read_nb(executed)
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, (f"{nb}: " + "\n".join(f"{e['ename']}: {e['evalue']}" for e in errors))
    assert not doc["metadata"].get("papermill", {}).get("exception"), f"{nb} raised"
    assert any(c["outputs"] for c in code), f"{nb} has no outputs after execution"
    unexecuted = [i for i, c in enumerate(code) if c["source"].strip()
                  and c.get("execution_count") is None]
    assert not unexecuted, f"{nb}: code cells {unexecuted} were not executed"
    injected = [c for c in code if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0]["source"], \
        f"{nb}: papermill did not inject profile = 'smoke'"


@pytest.mark.parametrize("doc", DOCS)
def test_chapter_page_exists(built_book, doc):
    built_book.require_success()
    page = built_book.html / f"{doc}.html"
    assert page.is_file(), f"{page} was not built"
    assert "<article" in page.read_text(encoding="utf-8")


def test_site_refers_to_no_other_host(built_book):
    built_book.require_success()
    html = built_book.html
    external = book_build.external_references(html)
    assert not external, "references to other hosts:\n" + "\n".join(external[:50])
    # the same, spelled out for the tags a page loads from
    for doc in DOCS:
        for tag, attr, url in book_build.page_references(html / f"{doc}.html"):
            if tag in {"script", "link", "img"}:
                assert not book_build.is_external(url), f"{doc}: <{tag} {attr}={url}>"


def test_browser_assets_are_local(built_book):
    built_book.require_success()
    vendor = built_book.html / "_static" / book_build.VENDOR_DIR
    for path in ("mathjax/tex-mml-chtml.js", "requirejs/require.js",
                 "html-manager/embed-amd.js"):
        assert (vendor / path).is_file(), f"{path} missing from the site"
    pages = {doc: (built_book.html / f"{doc}.html").read_text(encoding="utf-8") for doc in DOCS}
    with_math = [d for d, text in pages.items() if 'class="math' in text]
    assert with_math, "no page has math: expected at least one equation in the book"
    for doc in with_math:
        assert "_static/lth-vendor/mathjax/tex-mml-chtml.js" in pages[doc], doc
    for doc, text in pages.items():
        if "application/vnd.jupyter.widget-state+json" in text:
            assert "_static/lth-vendor/html-manager/embed-amd.js" in text, doc
            assert "_static/lth-vendor/requirejs/require.js" in text, doc


def test_chapters_prefer_a_larger_stored_set_and_show_your_run_beside(built_book, tmp_path):
    """A stored set of the same setup with more runs is what the summary shows, labelled,
    with the reader's own run's Table 2 beside it."""
    built_book.require_success()
    import json
    import shutil

    from lth_book.profiles import ensure_results

    params = json.loads((built_book.out / "book-build.json").read_text())["params"]
    if params["profile"] != "smoke":
        pytest.skip("needs a smoke build")
    own = Path(params["results_dir"])
    bigger = tmp_path / "stored" / "bigger"
    shutil.copytree(own / "lenet5", bigger / "lenet5")
    ensure_results("smoke", results=bigger, runs=4, device="cpu")  # one run more than yours
    out = tmp_path / "summary.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "book" / "summary.ipynb"), str(out),
           "--kernel", "python3", "--cwd", str(ROOT / "book"), "--no-progress-bar",
           "-p", "profile", "smoke", "-p", "results_dir", str(own), "-p", "device", "cpu",
           "-p", "stored_results", str(tmp_path / "stored")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = read_nb(out)
    text = "\n".join(str(o.get("data", o.get("text", ""))) for c in nb.cells
                     if c.cell_type == "code" for o in c.outputs)
    assert "a larger budget than your run" in text and "bigger" in text
    assert "your run" in text and "shown" in text  # the side-by-side Table 2
    assert "Every architecture above is your own run" not in text
