"""The built book in a real browser, offline: headless Debian Chromium driven by Playwright,
the site served on 127.0.0.1.

Every chapter loads without a failed request and without asking any other host; chapters
show figures; math is typeset by the local MathJax; stored widgets are rendered by the
local ipywidgets HTML manager; the static stage sliders switch frames. Screenshots go to
_build/screenshots/. Skipped when /usr/bin/chromium is absent (apt-get install chromium).
"""

from __future__ import annotations

import functools
import http.server
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
