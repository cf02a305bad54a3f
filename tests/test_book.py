"""The executable book builds: every notebook of _toc.yml runs under the smoke profile and the
site renders without referring to other hosts. Also the book's tables (lth_book.tables) and
its setup call (lth_book.setup), which need no build.

The book is built once per test session (fixture ``built_book``, shared with
tests/test_book_site.py) through the entry point of ``make book PROFILE=smoke``
(book/build.py), into a temporary folder. Setting LTH_BOOK_BUILT to the OUT folder of an
earlier build (``_build`` after ``make book PROFILE=smoke``) reuses it instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
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


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(nb):
    cells = read_nb(ROOT / nb)["cells"]
    with_outputs = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and c["outputs"]]
    assert not with_outputs, f"{nb} is committed with outputs in cells {with_outputs}"
    tagged = [c for c in cells if "parameters" in _tags(c)]
    assert len(tagged) == 1, f"{nb} needs exactly one code cell tagged 'parameters'"
    assert "remove-cell" in _tags(tagged[0]), f"{nb}: the parameters cell must stay off the page"


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_setup_is_one_call_off_the_page(nb):
    """Right after the parameters: one short cell, left off the page, calling lth_book.setup."""
    cells = read_nb(ROOT / nb)["cells"]
    i = next(i for i, c in enumerate(cells) if "parameters" in _tags(c))
    setup = cells[i + 1]
    assert setup["cell_type"] == "code" and "remove-cell" in _tags(setup), \
        f"{nb}: the cell after the parameters must be the setup, tagged remove-cell"
    lines = [ln for ln in setup["source"].splitlines() if ln.strip()]
    assert lines[0] == "from lth_book.setup import chapter" or \
        lines[0] == "from lth_book.setup import page", f"{nb}: setup is not lth_book.setup"
    assert len(lines) <= 3, f"{nb}: the setup cell has {len(lines)} lines:\n{setup['source']}"
    calls = [ln for ln in lines[1:] if "chapter(" in ln or "page(" in ln]
    assert len(calls) == 1, f"{nb}: the setup is not one call"
    # nothing else of the plumbing (ensure_results, rcParams, ...) is left in the chapter
    for c in cells:
        if c["cell_type"] == "code":
            for word in ("ensure_results(", "results_to_show(", "rcParams", "REPO_ROOT"):
                assert word not in c["source"], f"{nb}: {word} outside the setup call"


SHOWS = re.compile(r"\b(ch|pg)\.(md|figure|table|slider|verdict)\(")


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_code_cells_are_tagged_for_the_page(nb):
    """Every code cell says how the page shows it, except code meant for the reader."""
    cells = read_nb(ROOT / nb)["cells"]
    known = {"remove-cell", "remove-input", "hide-input", "parameters"}
    for i, c in enumerate(cells):
        if c["cell_type"] != "code":
            continue
        tags = set(_tags(c))
        assert tags <= known | {"remove-output", "full-width"}, f"{nb} cell {i}: tags {tags}"
        if SHOWS.search(c["source"]):  # writes the page: its code is plumbing
            assert tags & known, f"{nb} cell {i} shows its plumbing:\n{c['source'][:300]}"


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
    leaked = [i for i, c in enumerate(code) if {"remove-input", "hide-input"} & set(_tags(c))
              and any(o["output_type"] == "execute_result" and set(o["data"]) == {"text/plain"}
                      for o in c["outputs"])]
    assert not leaked, f"{nb}: code cells {leaked} print a bare value on the page"
    injected = [c for c in code if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0]["source"], \
        f"{nb}: papermill did not inject profile = 'smoke'"
    assert "remove-cell" in injected[0]["metadata"]["tags"], \
        f"{nb}: the injected parameters are not left off the page"


def test_width_chapter_gives_no_interval_from_too_few_successes(built_book):
    """The width chapter writes its per-width sentences itself: a width with fewer successes
    than an interval needs says so instead of printing the range of its few gains."""
    from lth_book.claims import too_few
    from lth_book.width import load_width, width_summary

    doc = read_nb(built_book.stage / "book" / "width.ipynb")
    said = [line[2:] for c in doc["cells"] if c["cell_type"] == "code" for o in c["outputs"]
            for line in "".join(o.get("data", {}).get("text/markdown", "")).splitlines()
            if line.startswith("- Width ")]
    summary = width_summary(load_width(ROOT / "results"))  # the stored study the page reads
    assert len(said) == len(summary)
    for text, (arch, r) in zip(said, summary.iterrows(), strict=True):
        assert text.startswith("Width ") and f"({arch}, " in text
        few = 0 < r["n_success"] and too_few(int(r["n_success"]))
        assert ("too few successes for an interval of the mean" in text) == few, text
        assert ("bootstrap interval" in text) == (r["n_success"] > 0 and not few), text


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

    from lth_book.profiles import ensure_results, get_profile

    params = json.loads((built_book.out / "book-build.json").read_text())["params"]
    if params["profile"] != "smoke":
        pytest.skip("needs a smoke build")
    own = Path(params["results_dir"])
    bigger = tmp_path / "stored" / "bigger"
    shutil.copytree(own / "lenet5", bigger / "lenet5")
    runs = get_profile("smoke").runs + 1  # one run more than yours
    ensure_results("smoke", results=bigger, archs=["lenet5"], runs=runs, device="cpu")
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


# -- the build asks lth_book.profiles -----------------------------------------------------


def test_build_takes_profiles_and_folders_from_lth_book_profiles():
    prof = book_build.profiles()
    assert prof.DEFAULT_PROFILE in prof.PROFILES
    assert prof.default_results("smoke") == ROOT / "_build" / "results-smoke"
    assert prof.default_results("quick") == ROOT / "results"
    with pytest.raises(SystemExit):  # argparse refuses an unknown profile
        book_build.main(["--profile", "nonesuch"])


def test_smoke_profile_covers_every_architecture():
    from lth_book.profiles import get_profile
    from lth_core.models import ARCHITECTURES

    smoke = get_profile("smoke")
    assert smoke.archs == list(ARCHITECTURES) and smoke.data.startswith("synthetic")


def test_hide_plumbing_tags_injected_and_parameters_cells(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]}),
                             new_code_cell("print(a)")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert book_build.hide_plumbing(path) == 2
    cells = read_nb(path)["cells"]
    assert [("remove-cell" in _tags(c)) for c in cells] == [True, True, False]
    assert book_build.hide_plumbing(path) == 0  # idempotent


# -- lth_book.formats and lth_book.tables: the paper's units and digits ----------------------

DECIMALS = re.compile(r"\d\.\d{4,}")


def test_number_formats():
    from lth_book import formats

    assert formats.num(69.5949) == "69.59" and formats.num(0.003) == "0.003"
    assert formats.num(-0.0001) == "0.000" and formats.num(float("nan")) == "n/a"
    assert formats.num(1.23456, digits=5) == "1.235"  # never more than 3 decimals
    assert formats.pm(67.921, 0.958) == "67.92 ± 0.96"
    assert formats.pct(71.428) == "71 %"
    assert formats.params(62_006) == "62K" and formats.params(3_599_686) == "3.60M"
    assert formats.ci(0.29, 0.96, lambda v: formats.pct(100 * v)) == "29 % to 96 %"
    # p-values: 2 significant digits, never past 3 decimals (0.0964 failed a table once)
    assert formats.pval(0.0964) == "p = 0.096" and formats.pval(0.5) == "p = 0.5"
    assert formats.pval(0.00642) == "p = 0.006" and formats.pval(0.0002) == "p < 0.001"
    assert formats.pval(0.0002, None) == "< 0.001" and formats.pval(0.012, None) == "0.012"
    assert formats.pval(float("nan")) == "p = n/a"
    assert formats.signed(0.3) == "+0.30" and formats.signed(-2.234) == "-2.23"
    assert formats.signed(0.0) == "0.00"
    assert formats.count(1, "run") == "1 run" and formats.count(12_000, "run") == "12,000 runs"
    assert formats.ci(-0.2, 0.5, formats.signed) == "-0.20 to +0.50"
    assert formats.ci(float("nan"), 0.5, formats.signed) == "n/a"  # never "+nan to +nan"
    assert not any(DECIMALS.search(formats.pval(p)) for p in (0.0099, 0.00101, 0.0456, 1.0))


def _fake_records(archs, runs=4, stages=3, seed=0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for arch in archs:
        for run in range(runs):
            for stage in range(stages):
                acc = 70 + rng.normal(0, 1)
                rows.append(dict(arch=arch, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=10 + rng.normal(),
                                 traj_len_2d=5 + rng.normal()))
    return pd.DataFrame(rows)


def test_table2_keeps_every_architecture_three_rows_each_and_marks():
    from lth_book import formats, tables
    from lth_book.paper import PAPER_NAMES
    from lth_core.analysis.metrics import table2

    ours = table2(_fake_records(["resnet18", "lenet5"]))
    cells, marks = tables.table2(ours)
    assert len(cells) == 21  # 7 architectures x (Dense, Best Sparse, Sparsest Matching)
    labels = list(dict.fromkeys(cells.index.get_level_values(0)))
    assert labels[0] == "LeNet-5" and labels[-1] == "ResNet18"  # by size
    assert labels[1] == f"PNASNet-A ({formats.NOT_COMPUTED})"
    assert all(any(n in lab for lab in labels) for n in PAPER_NAMES.values())
    assert set(cells.columns.get_level_values(1)) == {"ours", "paper"}
    assert list(dict.fromkeys(cells.columns.get_level_values(0))) == [
        "Trajectory Length", "Trajectory Length Gain %", "Test Accuracy", "Accuracy Gain %",
        "Success Rate", "LTS Score"]  # the paper's columns
    # ours far from the paper's LeNet-5 accuracy (70 vs 67.92 ± 0.96): marked
    acc, dense = ("Test Accuracy", "ours"), ("LeNet-5", "Dense")
    assert marks.loc[dense, acc] and formats.MARK in cells.loc[dense, acc]
    assert not marks.loc[:, [c for c in cells.columns if c[1] == "paper"]].to_numpy().any()
    text = formats.html_table(tables.table2_html(ours))
    assert not DECIMALS.search(text.split("</style>")[-1])
    assert 'class="lth-table lth-table2"' in text


def test_table1_marks_the_counts_that_differ_from_the_paper():
    from lth_book import tables

    t1 = tables.table1()
    assert list(t1["Name"])[:2] == ["LeNet-5", "PNASNet-A"] and len(t1) == 7
    marked = set(t1.loc[t1["mark"] != "", "Name"])
    assert "LeNet-5" in marked and "ResNet18" not in marked


def test_styled_tables_show_at_most_three_decimals():
    import pandas as pd

    from lth_book import formats

    df = pd.DataFrame({"a": [1.234567, 0.0001234], "n": [3, 50_000], "ok": [True, False]})
    html = formats.html_table(formats.styled(df, digits=5))
    body = html.split("</style>")[-1]
    assert not DECIMALS.search(body) and "50,000" in body and "yes" in body
    # a p-value column shows its bound, never a p of "0.000"
    for col in ("p (SR)", "two-sided p", "p_mean", "p"):
        df = pd.DataFrame({col: [0.00002, 0.0964, float("nan")], "x": [0.00002, 0.5, 1.0]})
        body = formats.html_table(formats.styled(df)).split("</style>")[-1]
        assert "&lt; 0.001" in body and "0.096" in body and "n/a" in body, col
        assert body.count("0.000") == 1, col  # x's cell only


def test_rank_trend_exact_permutation_p():
    from lth_book import findings
    from lth_core.models import ARCHITECTURES

    falling = {a: 7.0 - i for i, a in enumerate(ARCHITECTURES)}
    t = findings.rank_trend(falling)
    assert t["rho"] == pytest.approx(-1.0) and t["p"] == pytest.approx(1 / 5040)
    assert findings.rank_trend({"lenet5": 1.0, "resnet18": 0.5})["n"] == 2  # too few: NaN
    assert findings.rank_trend({"lenet5": 1.0, "resnet18": 0.5})["rho"] != -1


def test_findings_give_every_claim_a_verdict():
    from lth_book import findings, formats

    f = findings.findings(_fake_records(["lenet5", "pnasnet_a", "resnet32", "resnet18"]))
    assert list(f["id"]) == list(findings.CLAIMS)
    assert set(f["verdict"]) <= set(formats.VERDICTS)
    assert (f["paper"].str.len() > 0).all() and (f["ours"].str.len() > 0).all()
    assert f["scope"].iloc[0] == "4 of 7"
    one = findings.findings(_fake_records(["lenet5"]))
    trends = one.set_index("id").loc[["difficulty", "a", "lts"], "verdict"]
    assert (trends == formats.NOT_COMPUTED).all()  # a trend needs 3 architectures
    html = formats.html_table(findings.findings_html(f))
    assert html.count("lth-verdict-") >= len(f) and 'href="quality.html"' in html
