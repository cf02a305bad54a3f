"""Sphinx extension of the book: the offline site needs nothing from other hosts.

* jupyter-book 1.x always loads sphinx-thebe, which writes the CDN address of the thebe
  bundle into every page (fetched only when a "live code" button is pressed; this book has
  none): its script tags and style sheet are dropped from the pages.
* The ipywidgets HTML manager (``_static/lth-vendor/html-manager/embed-amd.js``) looks for
  its Font Awesome fonts beside the page unless ``__jupyter_widgets_assets_path__`` says
  where they are; and it typesets widget labels through the MathJax 2 API
  (``MathJax.Hub.Queue``), which MathJax 3 lacks. A small inline script, placed before every
  other script, sets the path and maps that call onto MathJax 3.
"""

from __future__ import annotations

WIDGETS_SHIM = """\
(function () {
  var root = document.documentElement.dataset.content_root || "";
  var assets = root + "_static/lth-vendor/html-manager";
  window.__jupyter_widgets_assets_path__ = assets + "/";
  if (typeof window.require === "undefined") {
    // read by RequireJS when it loads: the embedder's AMD module then resolves (and loads
    // its fonts) under _static instead of beside the page
    window.require = {paths: {"@jupyter-widgets/html-manager/dist": assets}};
  }
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {Queue: function (job) {
        var el = job && job[2];
        if (el && window.MathJax.typesetPromise) {
          window.MathJax.typesetPromise([el]).catch(function () {});
        }
      }};
    }
  });
})();"""


def _is_thebe(asset) -> bool:
    name = str(getattr(asset, "filename", asset) or "")
    body = str((getattr(asset, "attributes", None) or {}).get("body", ""))
    return "sphinx-thebe" in name or "THEBE_JS_URL" in body or "thebe@" in name


def _drop_thebe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if context.get(key):
            context[key] = [a for a in context[key] if not _is_thebe(a)]


def setup(app):
    app.add_js_file(None, body=WIDGETS_SHIM, priority=100)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
