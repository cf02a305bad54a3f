"""The built book in a real browser, offline: headless Debian Chromium driven by Playwright,
the site served on 127.0.0.1.

Every chapter loads without a failed request and without asking any other host; chapters
show figures; math is typeset by the local MathJax; stored widgets are rendered by the
local ipywidgets HTML manager; the static stage sliders switch frames. What a reader sees:
no parameters or setup code, a numbered caption under every figure, no table cell with more
than 3 decimals, every claim of the paper with a verdict on the findings page, and Table 2
with all seven architectures. Screenshots go to _build/screenshots/. Skipped when
/usr/bin/chromium is absent (apt-get install chromium).
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_book import DOCS, ROOT, built_book  # noqa: F401  (the session-wide book build)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOTS = ROOT / "_build" / "screenshots"
TIMEOUT_MS = 30_000
LOCAL_HOSTS = {"127.0.0.1"}
NO_REQUEST_SCHEMES = {"data", "blob", "about"}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent: the browser test needs Debian's chromium "
           "(apt-get install -y chromium)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url(built_book):  # noqa: F811
    built_book.require_success()
    handler = functools.partial(_QuietHandler, directory=str(built_book.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageVisit:
    """One page load with every request, failure and script error recorded."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400
                     and self.failed.append(f"{r.url} (HTTP {r.status})"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def other_hosts(self) -> list[str]:
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in NO_REQUEST_SCHEMES:
                continue
            if parts.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out

    def close(self):
        self.context.close()


# The visible frame of the stage slider that holds `input` (the frame whose src moves with
# the slider: one <img> whose src is swapped, or one visible <img> among several).
_STAGE_JS = """
(input) => {
  let box = input.closest('.lth-stage-slider') || input.parentElement;
  while (box && !box.querySelector('.lth-stage-frame')) box = box.parentElement;
  const visible = () => {
    const frames = Array.from(box.querySelectorAll('.lth-stage-frame'));
    const shown = frames.filter(f => !f.hidden && getComputedStyle(f).display !== 'none'
                                     && f.offsetParent !== null);
    return (shown[0] || frames[0]).getAttribute('src');
  };
  const before = visible();
  const lo = Number(input.min || 0), hi = Number(input.max || 100);
  const now = Number(input.value);
  input.value = String(now === hi ? lo : hi);
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new Event('change', {bubbles: true}));
  const after = visible();
  return {before: before ? before.slice(0, 200) + before.length : null,
          after: after ? after.slice(0, 200) + after.length : null,
          value: input.value, changed: before !== after};
}
"""


@pytest.mark.parametrize("doc", DOCS)
def test_chapter_in_browser(browser, site_url, doc):
    visit = PageVisit(browser, f"{site_url}/{doc}.html")
    page = visit.page
    try:
        assert not visit.failed, f"{doc}: failed requests:\n" + "\n".join(visit.failed)
        assert not visit.other_hosts(), (f"{doc}: requests to other hosts:\n"
                                         + "\n".join(visit.other_hosts()))
        assert page.locator("article h1").count() >= 1, f"{doc}: no title rendered"

        # figures: every chapter but the book's opening page shows at least one
        n_figures = page.evaluate(
            "() => Array.from(document.querySelectorAll('article img'))"
            ".filter(i => i.complete && i.naturalWidth > 0).length")
        if doc != DOCS[0]:
            assert n_figures >= 1, f"{doc}: no figure (img) rendered"

        # math: typeset by the local MathJax wherever the page has some
        if page.locator(".math").count():
            page.wait_for_selector("mjx-container", state="attached")

        # widget views shown on the page: rendered by the local HTML manager
        if page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count():
            page.wait_for_selector(".jupyter-widgets", state="attached")

        # static stage sliders: moving one shows another frame
        inputs = page.locator(".lth-stage-input")
        for i in range(inputs.count()):
            result = inputs.nth(i).evaluate(_STAGE_JS)
            assert result["changed"], f"{doc}: stage slider {i} did not switch frames: {result}"

        page.wait_for_load_state("networkidle")
        assert not visit.failed, f"{doc}: failed requests:\n" + "\n".join(visit.failed)
        assert not visit.other_hosts(), (f"{doc}: requests to other hosts:\n"
                                         + "\n".join(visit.other_hosts()))
        assert not visit.errors, f"{doc}: script errors:\n" + "\n".join(visit.errors)
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{doc.replace('/', '__')}.png"),
                            full_page=True)
        finally:
            visit.close()


def test_site_index_redirects_to_first_chapter(browser, site_url):
    visit = PageVisit(browser, f"{site_url}/index.html")
    try:
        visit.page.wait_for_url(f"**/{DOCS[0]}.html")
        assert not visit.failed and not visit.other_hosts()
    finally:
        visit.close()


def test_math_renders_somewhere(browser, site_url):
    """At least one chapter has math, and MathJax turns it into mjx-container elements."""
    for doc in DOCS:
        visit = PageVisit(browser, f"{site_url}/{doc}.html")
        try:
            if visit.page.locator(".math").count():
                visit.page.wait_for_selector("mjx-container", state="attached")
                assert visit.page.locator("mjx-container").count() >= 1
                return
        finally:
            visit.close()
    pytest.fail("no chapter has math")


# -- what a reader sees -------------------------------------------------------------------

# Text of the parameters cell, papermill's injected cell and the setup call
PLUMBING = ["Parameters (papermill", "# Parameters", "injected", "prefer_stored",
            "stored_results", "from lth_book.setup import", "ch = chapter(", "pg = page(",
            "ensure_results(", "results_to_show(", "rcParams"]
DECIMALS = re.compile(r"\d\.\d{4,}")

_FIGURES_JS = """
() => Array.from(document.querySelectorAll('article img')).map(img => {
  const fig = img.closest('figure');
  const cap = fig ? fig.querySelector('figcaption') : null;
  return {src: (img.getAttribute('src') || '').slice(0, 60),
          caption: cap ? cap.textContent.trim() : null};
})
"""

_CELLS_JS = """
() => Array.from(document.querySelectorAll('article table td, article table th'))
  .map(c => c.innerText.trim())
"""


@pytest.fixture(scope="module")
def pages(browser, site_url):
    """Each chapter's visible text, figures and table cells, read once."""
    out = {}
    for doc in DOCS:
        visit = PageVisit(browser, f"{site_url}/{doc}.html")
        try:
            page = visit.page
            out[doc] = {"text": page.locator("article").inner_text(),
                        "figures": page.evaluate(_FIGURES_JS),
                        "cells": page.evaluate(_CELLS_JS)}
        finally:
            visit.close()
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_no_parameters_or_setup_code_on_the_page(pages, doc):
    text = pages[doc]["text"]
    shown = [p for p in PLUMBING if p in text]
    assert not shown, f"{doc}: plumbing visible on the page: {shown}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_figure_has_a_numbered_caption(pages, doc):
    figures = pages[doc]["figures"]
    missing = [f["src"] for f in figures if not (f["caption"] or "").startswith("Figure ")]
    assert not missing, f"{doc}: {len(missing)} of {len(figures)} images without a caption"
    numbers = [int(re.match(r"Figure (\d+)", f["caption"]).group(1)) for f in figures]
    distinct = list(dict.fromkeys(numbers))  # a slider's frames share their figure's number
    assert distinct == list(range(1, len(distinct) + 1)), f"{doc}: figures numbered {distinct}"


@pytest.mark.parametrize("doc", DOCS)
def test_no_table_cell_shows_more_than_three_decimals(pages, doc):
    bad = [c for c in pages[doc]["cells"] if DECIMALS.search(c)]
    assert not bad, f"{doc}: table cells with more than 3 decimals: {bad[:10]}"


# A record key or an architecture's id where a reader's name belongs ("shown_from",
# "pnasnet_a"); the own-model chapter shows the record's keys on purpose (what a
# practitioner's code reads).
RECORD_KEY = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)+")
NAN = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.mark.parametrize("doc", DOCS)
def test_table_cells_speak_to_readers(pages, doc):
    cells = pages[doc]["cells"]
    assert not [c for c in cells if NAN.search(c)], f"{doc}: 'nan' in a table cell"
    keys = [c for c in cells if RECORD_KEY.fullmatch(c)]
    assert doc.endswith("own_model") or not keys, f"{doc}: record keys in tables: {keys[:10]}"


def _doc(name: str) -> str:
    matches = [d for d in DOCS if d.endswith(name)]
    if not matches:
        pytest.fail(f"no {name} page in _toc.yml")
    return matches[0]


def test_findings_page_lists_every_claim_with_a_verdict(browser, site_url):
    from lth_book.findings import CLAIMS
    from lth_book.formats import VERDICTS

    doc = _doc("findings")
    assert DOCS.index(doc) == 1, "the findings page comes right after the introduction"
    visit = PageVisit(browser, f"{site_url}/{doc}.html")
    try:
        rows = visit.page.evaluate("""
() => Array.from(document.querySelectorAll('article table.lth-findings tbody tr')).map(
  tr => ({text: tr.innerText,
          verdict: (tr.querySelector('.lth-verdict') || {}).textContent || null,
          link: (tr.querySelector('a') || {}).href || null}))
""")
    finally:
        visit.close()
    assert len(rows) == len(CLAIMS), f"{len(rows)} rows for {len(CLAIMS)} claims"
    for (where, claim), row in zip(CLAIMS.values(), rows, strict=True):
        assert where in row["text"] and claim in row["text"], row["text"][:200]
        assert row["verdict"] in VERDICTS, f"{claim}: verdict {row['verdict']!r}"
        assert row["link"] and row["link"].endswith(".html"), f"{claim}: no chapter link"


def test_table2_shows_all_seven_architectures(browser, site_url):
    from lth_book.paper import PAPER_NAMES

    visit = PageVisit(browser, f"{site_url}/{_doc('summary')}.html")
    try:
        table = visit.page.locator("article table.lth-table2")
        assert table.count() == 1, "the summary shows Table 2 once"
        heads = table.locator("tbody th").all_inner_texts()
    finally:
        visit.close()
    for name in PAPER_NAMES.values():
        rows = [h for h in heads if h.startswith(name)]
        assert rows, f"Table 2 has no row for {name}"
    types = [h for h in heads if h in ("Dense", "Best Sparse", "Sparsest Matching")]
    assert len(types) == 3 * len(PAPER_NAMES), "three rows per architecture"
