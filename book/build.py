"""Build the executable book: papermill runs every chapter, jupyter-book renders the site.

    python book/build.py [--profile smoke|quick|paper] [--data SPEC] [--results DIR]
                         [--device auto|cpu|cuda] [--out _build] [--only NAME ...]

1. The chapters are read from ``_toc.yml`` (its order is the execution order: the first
   chapters compute the results that later ones reuse).
2. ``book/`` is copied to the staging folder ``OUT/book-src/book`` (without notebooks), and
   papermill executes each committed notebook into it with the parameters ``profile``,
   ``results_dir``, ``device`` and, when given, ``data`` (``-p name value``). The committed
   notebooks stay without outputs. Plumbing stays off the page: the cell papermill injects
   (tag ``injected-parameters``) and the ``parameters`` cell get myst-nb's ``remove-cell``.
   The kernels run with ``lth_book.setup.STATIC_BOOK_ENV`` set, so the chapters emit their
   pre-rendered stage sliders but no live ipywidgets (a static page has no kernel).
3. MathJax, RequireJS and the ipywidgets HTML manager are installed from the npm registry
   (``npm ci`` with the pinned ``package-lock.json``, into ``_build/npm``) and copied into the
   staging folder, where ``_config.yml`` points Sphinx and myst-nb at them.
4. ``jupyter-book build`` renders the staging folder (``execute_notebooks: off``) into
   ``OUT/html``, then every page is checked for references to other hosts.

The profile names, the default profile and each profile's results folder are owned by
``lth_book.profiles``, imported only to resolve them (so the table-of-contents helpers stay
light), as is ``lth_book.setup`` for the name of the static-book variable; otherwise only
the standard library, papermill and jupyter-book are used, and the build works for any set
of notebooks listed in ``_toc.yml``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# cells off the page: papermill's injected parameters and the notebooks' own parameters cell
PLUMBING_TAGS = {"injected-parameters", "parameters"}

# What the site needs from each npm package (source inside node_modules, target inside
# _static/lth-vendor). MathJax loads its fonts and extensions relative to its own script.
VENDOR_DIR = "lth-vendor"
VENDOR = {
    "mathjax": ("mathjax/es5", None),
    "requirejs": ("requirejs", ["require.js"]),
    # the AMD embedder bundles @jupyter-widgets/base, controls and output; the other files
    # are the Font Awesome fonts its CSS refers to
    "html-manager": ("@jupyter-widgets/html-manager/dist", ["embed-amd.js", "*.woff2",
                                                            "*.woff", "*.ttf", "*.eot",
                                                            "*.svg"]),
}


def log(msg: str) -> None:
    print(f"[book] {msg}", flush=True)


# ---------------------------------------------------------------------------------------
# The table of contents


def toc_docnames(root: Path = ROOT) -> list[str]:
    """Every document of ``_toc.yml`` (root first, then chapters and sections in order)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return [re.sub(r"\.(ipynb|md)$", "", n) for n in names]


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks of ``_toc.yml``, relative to ``root``, in execution order."""
    out = []
    for name in toc_docnames(root):
        if (root / f"{name}.ipynb").exists():
            out.append(Path(f"{name}.ipynb"))
        elif not (root / f"{name}.md").exists():
            raise FileNotFoundError(f"_toc.yml lists {name}, but neither {name}.ipynb nor "
                                    f"{name}.md exists under {root}")
    return out


# ---------------------------------------------------------------------------------------
# Step 2: papermill


def stage_sources(root: Path, stage: Path, fresh: bool = True) -> None:
    """The staging folder: the configuration and the book's folders without notebooks
    (``fresh``: emptied first; otherwise executed notebooks already there are kept)."""
    if fresh and stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    # lth_book stays out: the kernels import the installed package, whose paths (results/,
    # the repository) are those of the checkout, not of the staging folder
    ignore = shutil.ignore_patterns("*.ipynb", "build.py", "__pycache__", ".ipynb_checkpoints",
                                    "_build", "lth_book")
    folders = {Path(n).parts[0] for n in toc_docnames(root) if len(Path(n).parts) > 1}
    for folder in sorted(folders):
        shutil.copytree(root / folder, stage / folder, ignore=ignore, dirs_exist_ok=True)
    for name in toc_docnames(root):
        if (root / f"{name}.md").exists():
            shutil.copy2(root / f"{name}.md", stage / f"{name}.md")


def data_parameter(data: str | None, root: Path) -> str | None:
    """An existing path becomes absolute (the kernel runs elsewhere); a keyword stays."""
    if not data:
        return None
    path = Path(data)
    if not path.is_absolute() and (root / path).exists():
        return str((root / path).resolve())
    return data


def hide_plumbing(path: Path) -> int:
    """Tag the parameters cells of an executed notebook ``remove-cell`` (myst-nb leaves them
    off the page); the number of cells tagged."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    n = 0
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if PLUMBING_TAGS & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
            n += 1
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return n


def kernel_env() -> dict[str, str]:
    """The environment of papermill and its kernels: the chapters learn that they render the
    static book (``lth_book.setup.STATIC_BOOK_ENV``), which has no kernel for live widgets."""
    profiles()  # lth_book importable
    from lth_book.setup import STATIC_BOOK_ENV

    return dict(os.environ, PYTHONUNBUFFERED="1", **{STATIC_BOOK_ENV: "1"})


def execute(root: Path, stage: Path, notebooks: list[Path], params: dict[str, str],
            keep_going: bool = False, timeout: int | None = None) -> dict[str, float]:
    """papermill each notebook into the staging folder; the seconds each one took."""
    times, failed = {}, []
    env = kernel_env()
    for nb in notebooks:
        out = stage / nb
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "papermill", str(root / nb), str(out),
               "--kernel", "python3", "--cwd", str(out.parent), "--no-progress-bar",
               "--log-output", "--log-level", "WARNING"]
        if timeout:
            cmd += ["--execution-timeout", str(timeout)]
        for key, value in params.items():
            cmd += ["-p", key, value]
        log(f"executing {nb} ({' '.join(f'{k}={v}' for k, v in params.items())})")
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=root, env=env)
        times[str(nb)] = time.perf_counter() - t0
        if out.exists():
            hide_plumbing(out)
        if rc != 0:
            failed.append(str(nb))
            log(f"FAILED {nb} after {times[str(nb)]:.0f} s: the executed copy with the "
                f"traceback is {out}")
            if not keep_going:
                break
        else:
            log(f"done {nb} in {times[str(nb)]:.0f} s")
    if failed:
        raise SystemExit(f"[book] notebooks failed: {', '.join(failed)}")
    return times


# ---------------------------------------------------------------------------------------
# Step 3: browser assets from npm


def npm_install(root: Path, npm_dir: Path) -> Path:
    """``npm ci`` of the pinned package-lock.json into npm_dir (skipped when up to date)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("[book] npm is needed to fetch MathJax, RequireJS and the ipywidgets "
                         "HTML manager (apt-get install -y nodejs npm)")
    lock = (root / "package.json").read_bytes() + (root / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    stamp = npm_dir / ".installed"
    modules = npm_dir / "node_modules"
    if stamp.exists() and stamp.read_text() == digest and modules.is_dir():
        return modules
    npm_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(root / name, npm_dir / name)
    log(f"npm ci into {npm_dir}")
    rc = subprocess.call([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                          "--loglevel", "error"], cwd=npm_dir)
    if rc != 0:
        raise SystemExit(f"[book] npm ci failed in {npm_dir} (exit {rc})")
    stamp.write_text(digest)
    return modules


def copy_vendor(modules: Path, stage: Path) -> Path:
    """The browser assets into STAGE/_vendor/lth-vendor (published as _static/lth-vendor)."""
    target = stage / "_vendor" / VENDOR_DIR
    if target.exists():
        shutil.rmtree(target)
    for name, (src, patterns) in VENDOR.items():
        src_dir = modules / src
        if not src_dir.is_dir():
            raise SystemExit(f"[book] {src_dir} is missing: is package.json complete?")
        dst = target / name
        if patterns is None:
            shutil.copytree(src_dir, dst, ignore=shutil.ignore_patterns("*.map", "*.md"))
            continue
        dst.mkdir(parents=True)
        for pattern in patterns:
            for f in src_dir.glob(pattern):
                shutil.copy2(f, dst / f.name)
    return target


# ---------------------------------------------------------------------------------------
# Step 4: jupyter-book, and the offline check


def jupyter_book(stage: Path, out: Path) -> Path:
    """``jupyter-book build`` of the staging folder; the site ends up in OUT/html."""
    jb_out = out / "jb"
    cmd = [sys.executable, "-c",
           "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(stage), "--path-output", str(jb_out), "--builder", "html", "--all"]
    log("jupyter-book build")
    if subprocess.call(cmd) != 0:
        raise SystemExit("[book] jupyter-book build failed (its messages are above)")
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    (jb_out / "_build" / "html").rename(html)
    return html


FETCHING_TAGS = {"script", "link", "img", "iframe", "source", "video", "audio", "embed",
                 "object", "track", "input"}
URL_ATTRS = {"src", "href", "data", "srcset", "poster"}
# <link rel=...> kinds that are names, not downloads
NON_FETCHING_RELS = {"canonical", "alternate", "author", "license", "help", "search", "index",
                     "next", "prev", "up", "top", "first", "last", "bookmark", "external",
                     "nofollow", "noopener", "noreferrer", "me"}


def is_external(url: str) -> bool:
    url = url.strip().lower()
    return url.startswith(("http:", "https:", "//", "ftp:", "ws:", "wss:"))


class _RefParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag not in FETCHING_TAGS:
            return
        attrs = dict(attrs)
        if tag == "link":
            rels = set((attrs.get("rel") or "").lower().split())
            if rels and rels <= NON_FETCHING_RELS:
                return
        for key in URL_ATTRS & attrs.keys():
            value = attrs[key] or ""
            urls = [u.strip().split(" ")[0] for u in value.split(",")] if key == "srcset" \
                else [value]
            for url in urls:
                self.refs.append((tag, key, url))


def page_references(html_file: Path) -> list[tuple[str, str, str]]:
    """(tag, attribute, url) of everything a page loads through its tags."""
    parser = _RefParser()
    parser.feed(html_file.read_text(encoding="utf-8", errors="replace"))
    return parser.refs


_CSS_URL = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?([^'")\s]+)""", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def external_references(html_dir: Path) -> list[str]:
    """Every reference to another host in the site's pages (script, link, img, ...) and
    style sheets (url(), @import): what would make a page fetch from the network."""
    found = []
    for page in sorted(html_dir.rglob("*.html")):
        for tag, attr, url in page_references(page):
            if is_external(url):
                found.append(f"{page.relative_to(html_dir)}: <{tag} {attr}={url}>")
        text = page.read_text(encoding="utf-8", errors="replace")
        for style in re.findall(r"<style[^>]*>(.*?)</style>", text, re.S | re.I):
            for url in _CSS_URL.findall(_CSS_COMMENT.sub("", style)):
                if is_external(url):
                    found.append(f"{page.relative_to(html_dir)}: <style> {url}")
    for css in sorted(html_dir.rglob("*.css")):
        text = _CSS_COMMENT.sub("", css.read_text(encoding="utf-8", errors="replace"))
        for url in _CSS_URL.findall(text):
            if is_external(url):
                found.append(f"{css.relative_to(html_dir)}: {url}")
    return found


# ---------------------------------------------------------------------------------------


def profiles():
    """``lth_book.profiles``, the owner of the profile names and their results folders."""
    if str(ROOT / "book") not in sys.path:  # lth_book without the editable install
        sys.path.insert(0, str(ROOT / "book"))
    from lth_book import profiles as module

    return module


def build(profile: str | None = None, data: str | None = None, results: str | None = None,
          device: str = "auto", out: str | Path = "_build", root: Path = ROOT,
          only: list[str] | None = None, keep_going: bool = False,
          npm_dir: str | Path | None = None, timeout: int | None = None,
          reuse: bool = False) -> dict:
    """Execute the notebooks of ``_toc.yml`` and build the site; a summary of the build."""
    root = Path(root).resolve()
    out = Path(out)
    out = (out if out.is_absolute() else root / out).resolve()
    stage = out / "book-src"
    prof = profiles()
    profile = profile or prof.DEFAULT_PROFILE
    prof.get_profile(profile)  # unknown names fail here, naming the choices
    if results is None:  # the profile's own folder (smoke's stays out of results/)
        results_path = prof.default_results(profile)
    else:
        results_path = Path(results)
        results_path = results_path if results_path.is_absolute() else root / results_path
    params = {"profile": profile, "results_dir": str(results_path), "device": device}
    data = data_parameter(data, root)
    if data is not None:
        params["data"] = data

    notebooks = toc_notebooks(root)
    if only:
        wanted = {Path(n).stem for n in only}
        notebooks = [nb for nb in notebooks if nb.stem in wanted]
    t0 = time.perf_counter()
    stage_sources(root, stage, fresh=not reuse)
    if reuse:  # development: only what has no executed copy yet
        notebooks = [nb for nb in notebooks if not (stage / nb).exists()]
    times = execute(root, stage, notebooks, params, keep_going=keep_going, timeout=timeout)
    npm_dir = Path(npm_dir) if npm_dir else root / "_build" / "npm"
    copy_vendor(npm_install(root, npm_dir), stage)
    html = jupyter_book(stage, out)
    external = external_references(html)
    if external:
        raise SystemExit("[book] the site refers to other hosts:\n  " + "\n  ".join(external))
    summary = {"profile": profile, "params": params, "html": str(html), "stage": str(stage),
               "notebooks": [str(nb) for nb in notebooks], "execute_s": times,
               "total_s": round(time.perf_counter() - t0, 1)}
    (out / "book-build.json").write_text(json.dumps(summary, indent=2))
    log(f"site: {html / 'index.html'} ({summary['total_s']:.0f} s)")
    return summary


def main(argv: list[str] | None = None) -> int:
    prof = profiles()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default=prof.DEFAULT_PROFILE, choices=list(prof.PROFILES))
    p.add_argument("--data", default=None,
                   help="data spec passed to the notebooks (default: the profile's own)")
    p.add_argument("--results", default=None,
                   help="results folder (default: the profile's, see lth_book/profiles.py)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="_build", help="build folder (site in OUT/html)")
    p.add_argument("--only", nargs="*", help="execute only these chapters (by name)")
    p.add_argument("--keep-going", action="store_true",
                   help="execute the other notebooks after one fails")
    p.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    p.add_argument("--reuse", action="store_true",
                   help="development: keep executed notebooks of the last build, execute only "
                        "the missing ones, rebuild the site")
    p.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    build(args.profile, args.data or None, args.results or None, args.device, args.out,
          root=Path(args.root), only=args.only, keep_going=args.keep_going,
          timeout=args.timeout, reuse=args.reuse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
