"""One call sets up a chapter: ``ch = chapter(profile, data, results_dir, archs, runs, ...)``.

It computes (resumably) or reads the profile's results (`profiles.ensure_results`), swaps in a
larger stored set of the same setup where the project has one (`profiles.results_to_show`),
orders the architectures by size and sets matplotlib up. It displays nothing, so the setup
cell can be left off the page; the chapter shows what it needs through the returned object:
``ch.df`` (the records shown), ``ch.archs`` (by size), ``ch.t2`` (Table 2 of them),
``ch.sources_markdown()``, ``ch.figure(fig, caption)`` (numbered, captioned figures),
``ch.slider(...)``, ``ch.md(text)`` and ``ch.findings`` (the verdicts of `findings.findings`).

``ch.slider`` shows the live ipywidgets slider only where a reader's kernel runs behind the
page (JupyterLab): ``book/build.py`` sets ``STATIC_BOOK_ENV`` for the kernels papermill runs,
since the static HTML book has no kernel and needs only the pre-rendered slider.
"""

from __future__ import annotations

import html
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import matplotlib
import pandas as pd

from lth_core.analysis.metrics import table2
from lth_core.config import RESULTS, SearchConfig
from lth_core.models import ARCHITECTURES, by_size

from .authors import MissingAuthorsData, authors_gains_path
from .display import figure_to_png_base64, stage_slider
from .findings import findings, verdict_markdown
from .formats import NOT_COMPUTED, count, name, styled
from .paper import PAPER_PROTOCOL, paper_table2
from .profiles import (
    DEFAULT_PROFILE,
    REPO_ROOT,
    Profile,
    default_results,
    ensure_results,
    get_profile,
    resolve_data,
    results_to_show,
)

FIGURE_DPI = 110
# Set to "1" by book/build.py for the kernels that execute the chapters of the static book
STATIC_BOOK_ENV = "LTH_BOOK_STATIC"


def live_widgets() -> bool:
    """Whether chapters show live ipywidgets: only in a kernel with a front end that can run
    them (JupyterLab), not while the static book is built (``STATIC_BOOK_ENV`` set) and not
    in plain Python (where a widget would print as ``VBox(...)``)."""
    if os.environ.get(STATIC_BOOK_ENV, "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _results_path(profile: Profile, results_dir: str | os.PathLike | None) -> Path:
    """The results folder: the profile's by default, a relative path from the repository."""
    if results_dir is None:
        return default_results(profile)
    path = Path(results_dir)
    return path if path.is_absolute() else REPO_ROOT / path


def _matplotlib() -> None:
    matplotlib.rcParams.update({"figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI,
                                "font.size": 10})


def _page_warnings() -> None:
    """A page built without the authors' per-run file says so once, as a note on the page,
    instead of a Python warning per comparison left out (a checkout without shared/)."""
    if getattr(warnings.showwarning, "lth_page", False):
        return
    shown = warnings.showwarning
    said: list[bool] = []

    def show(message, category, *args, **kwargs):
        if not issubclass(category, MissingAuthorsData):
            return shown(message, category, *args, **kwargs)
        if not said:
            said.append(True)
            from IPython.display import Markdown, display

            display(Markdown(f"*Note: the authors' per-run numbers "
                             f"(`{authors_gains_path().name}`) are not on the machine that "
                             "built this page, so their side of its comparisons is left "
                             "out.*"))

    show.lth_page = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def figure_html(fig, number: int, caption: str) -> str:
    """A figure as HTML: the PNG inline and "Figure N: caption" under it."""
    text = f"Figure {number}: {caption}"
    png = figure_to_png_base64(fig, dpi=FIGURE_DPI)
    return (f'<figure class="lth-figure" id="figure-{number}" style="margin: 1em 0;">'
            f'<img src="data:image/png;base64,{png}" alt="{html.escape(text)}" '
            'style="max-width: 100%; height: auto;">'
            f'<figcaption style="font-size: 0.92em; margin-top: 0.3em;"><strong>Figure '
            f"{number}:</strong> {html.escape(caption)}</figcaption></figure>")


@dataclass
class Page:
    """A page of the book: its profile and folders, Markdown, numbered figures and tables."""

    profile: Profile
    results_dir: Path
    data: str | None = None
    device: str = "auto"
    prune_rate: float = SearchConfig.prune_rate
    _numbers: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def data_spec(self) -> str:
        """The data this profile trains on (resolved: the JPEG copy, cifar10, synthetic...)."""
        return resolve_data(self.data, self.profile)

    def number(self, key: str) -> int:
        """The figure number of ``key``, the same when a cell runs again."""
        return self._numbers.setdefault(key, len(self._numbers) + 1)

    def md(self, text: str) -> None:
        """Display Markdown (sentences whose numbers the code writes)."""
        from IPython.display import Markdown, display

        display(Markdown(text))

    def figure(self, fig, caption: str, key: str | None = None) -> None:
        """Display ``fig`` numbered (``number(key or caption)``), its caption under it."""
        from IPython.display import HTML, display

        display(HTML(figure_html(fig, self.number(key or caption), caption)))

    def slider(self, draw, stages: list[int], caption: str, slider_id: str) -> None:
        """A stage slider as a numbered figure: pre-rendered frames (what the static book can
        show) and, in a live kernel (`live_widgets`), the ipywidgets slider redrawing
        ``draw(stage)``."""
        stage_slider(draw, stages, caption, slider_id, widget=live_widgets(),
                     caption=f"Figure {self.number(slider_id)}: {caption}")

    def table(self, sty) -> None:
        """Display a table (a `formats.styled` Styler or a DataFrame, in the book's formats)."""
        from IPython.display import display

        display(styled(sty) if isinstance(sty, pd.DataFrame) else sty)


@dataclass
class Chapter(Page):
    """A chapter's results: the records shown, the reader's own run, and where they came from."""

    own: pd.DataFrame = None
    shown: object = None  # sources.Shown
    archs: list[str] = field(default_factory=list)
    stages: int | None = None

    @property
    def df(self) -> pd.DataFrame:
        """The LAMP records the chapter shows (the largest stored budget of the setup)."""
        return self.shown.df

    @property
    def order(self) -> list[str]:
        """The architectures shown, in ascending order of parameter count."""
        return self.archs

    @cached_property
    def t2(self) -> pd.DataFrame:
        """Table 2 (`metrics.table2`) of the records shown, architectures by size."""
        return table2(self.df, order=self.archs)

    @cached_property
    def paper(self) -> pd.DataFrame:
        """The paper's Table 2 as printed (`paper.paper_table2`)."""
        return paper_table2()

    @cached_property
    def findings(self) -> pd.DataFrame:
        """One verdict per claim of the paper (`findings.findings`) on the records shown."""
        return findings(self.df)

    def verdict(self, *ids: str) -> None:
        """Display the verdicts of these claims (ids of `findings.CLAIMS`) with their rules."""
        self.md(verdict_markdown(self.findings, ids))

    def sources_markdown(self) -> str:
        """Profile, the reader's run and where each architecture's records come from."""
        own = self.own
        head = (f"**Profile `{self.profile.name}`**: {self.profile.note}. Your run: "
                f"{count(own['run'].nunique(), 'run')} of "
                f"{count(len(set(own['arch'])), 'architecture')} in "
                f"`{_label(self.results_dir)}`.")
        return head + "\n\n" + self.shown.markdown()

    def budget_markdown(self) -> str:
        """One paragraph: the budget shown against the paper's (from the records)."""
        df = self.df
        runs = df.groupby("arch")["run"].nunique()
        stages = df.groupby("arch")["stage"].max() + 1
        shown = ", ".join(f"{name(a)} {runs[a]} runs (K = {stages[a]})" for a in self.archs)
        absent = [name(a) for a in ARCHITECTURES if a not in self.archs]
        text = (f"**Budget**: profile `{self.profile.name}` ({self.profile.note}). "
                f"Shown: {shown}.")
        if absent:
            text += f" {NOT_COMPUTED.capitalize()}: {', '.join(absent)}."
        return text + (f" The paper: {len(ARCHITECTURES)} architectures, {PAPER_PROTOCOL.runs} "
                       f"runs each, K = {PAPER_PROTOCOL.stages}.")

    def baselines(self) -> dict[str, pd.DataFrame]:
        """LAMP and, where the profile has them, magnitude and random pruning on the same
        runs (paired: the baselines' architectures and run indices, same seeds)."""
        prof = self.profile
        out = {"lamp": self.df}
        if not prof.baseline_runs:
            return out
        df = self.df
        out["lamp"] = df[df["arch"].isin(prof.baseline_archs) & (df["run"] < prof.baseline_runs)]
        for pruner in ("magnitude", "random"):
            out[pruner] = ensure_results(prof, results=self.results_dir, data=self.data,
                                         archs=prof.baseline_archs, runs=prof.baseline_runs,
                                         stages=self.stages, prune_rate=self.prune_rate,
                                         pruner=pruner, device=self.device)
        return out


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def chapter(profile: str | None = None, data: str | None = None,
            results_dir: str | os.PathLike | None = None, archs: list[str] | None = None,
            runs: int | None = None, stages: int | None = None,
            prune_rate: float | None = None, device: str = "auto",
            prefer_stored: bool = True,
            stored_results: str | os.PathLike = RESULTS) -> Chapter:
    """Set a chapter up from its parameters (the notebooks' ``parameters`` cell).

    ``profile`` None: the book's default; ``results_dir`` None: the profile's folder;
    relative paths are from the repository.
    ``prefer_stored``: show a larger stored set of the same setup under ``stored_results``.
    ``prune_rate`` None: lth_core's default (``SearchConfig.prune_rate``).
    """
    prune_rate = SearchConfig.prune_rate if prune_rate is None else prune_rate
    prof = get_profile(profile or DEFAULT_PROFILE)
    root = _results_path(prof, results_dir)
    _matplotlib()
    _page_warnings()
    own = ensure_results(prof, results=root, data=data, archs=archs, runs=runs, stages=stages,
                         prune_rate=prune_rate, device=device)
    shown = results_to_show(prof, own, results=root, stages=stages, prune_rate=prune_rate,
                            prefer=prefer_stored, search_root=stored_results)
    return Chapter(profile=prof, results_dir=root, data=data, device=device,
                   prune_rate=prune_rate, own=own, shown=shown,
                   archs=by_size(shown.df["arch"]), stages=stages)


def page(profile: str | None = None, data: str | None = None,
         results_dir: str | os.PathLike | None = None, device: str = "auto",
         prune_rate: float | None = None) -> Page:
    """Set up a page that computes its own results (e.g. the user-model chapter)."""
    prof = get_profile(profile or DEFAULT_PROFILE)
    _matplotlib()
    _page_warnings()
    return Page(profile=prof, results_dir=_results_path(prof, results_dir), data=data,
                device=device,
                prune_rate=SearchConfig.prune_rate if prune_rate is None else prune_rate)
