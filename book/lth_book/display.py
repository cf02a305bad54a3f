"""Showing stage-dependent figures in both places a reader meets them.

In JupyterLab an ipywidgets slider redraws the figure from stored results; in the static
HTML book, where no kernel runs, a pre-rendered frame per stage sits behind a plain HTML
range input. ``stage_slider`` always emits the static one and, with ``widget``, the live
one (chapters ask for it where a kernel serves the page: ``setup.live_widgets``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def stage_frames(draw: Callable[[int], Figure], stages: list[int]) -> list[str]:
    """One base64 PNG per stage (figures closed as soon as they are encoded)."""
    frames = []
    for k in stages:
        fig = draw(k)
        frames.append(figure_to_png_base64(fig))
        plt.close(fig)
    return frames


def stage_slider(draw: Callable[[int], Figure], stages: list[int], title: str,
                 slider_id: str, widget: bool = True, caption: str | None = None):
    """Display the static slider (for the HTML book) and, when asked, the live widget (the
    ipywidgets box, returned; None without it).

    With ``caption`` the slider is a captioned ``<figure>`` ("Figure N: ..." under it).
    """
    from IPython.display import HTML, display

    labels = [f"stage {k}" + (" (dense)" if k == 0 else "") for k in stages]
    slider = static_stage_slider(stage_frames(draw, stages), labels, title, slider_id,
                                 show_title=not caption)
    if caption:
        slider = (f'<figure class="lth-figure" style="margin: 1em 0;">{slider}'
                  f'<figcaption style="font-size: 0.92em; margin-top: 0.3em;">'
                  f"{html.escape(caption)}</figcaption></figure>")
    display(HTML(slider))
    if widget:
        box = widget_stage_slider(draw, stages)
        display(box[0] if isinstance(box, tuple) else box)
        return box
    return None


def figure_to_png_base64(fig: Figure, dpi: int = 100) -> str:
    """PNG of `fig`, base64-encoded (ASCII), for data: URIs and widget outputs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_SLIDER_CSS = """
#{id} {{ font-family: sans-serif; max-width: 100%; }}
#{id} .lth-stage-controls {{ display: flex; align-items: center; gap: 0.75em; }}
#{id} .lth-stage-input {{ flex: 1; max-width: 24em; }}
#{id} .lth-stage-frame {{ max-width: 100%; height: auto; display: block; }}
#{id} .lth-stage-frame[hidden] {{ display: none; }}
"""

_SLIDER_JS = """
(function () {{
  var root = document.getElementById({id_js});
  var input = root.querySelector(".lth-stage-input");
  var label = root.querySelector(".lth-stage-label");
  var frames = root.querySelectorAll(".lth-stage-frame");
  var labels = {labels_js};
  function show(i) {{
    frames.forEach(function (f, j) {{ f.hidden = j !== i; }});
    label.textContent = labels[i];
    root.setAttribute("data-stage", String(i));
  }}
  input.addEventListener("input", function () {{ show(parseInt(input.value, 10)); }});
  show(parseInt(input.value, 10));
}})();
"""


def static_stage_slider(frames: list[str], labels: list[str], title: str,
                        slider_id: str, show_title: bool = True) -> str:
    """Self-contained HTML: a range input that shows one of the base64 PNG `frames` at a time.

    No external scripts or styles, so it works in a static book page and offline. Each frame
    is one <img> with a data: URI (only the current one visible, the first without script).
    Stable hooks for browser tests: container `.lth-stage-slider#<slider_id>` (attribute
    data-stage = current index), `.lth-stage-input`, `.lth-stage-frame`, `.lth-stage-label`.
    ``show_title=False``: the title only labels the input and frames (a caption says more).
    """
    if len(frames) != len(labels) or not frames:
        raise ValueError(f"need as many labels as frames (>= 1), got {len(frames)} frames "
                         f"and {len(labels)} labels")
    if not re.fullmatch(r"[A-Za-z][\w-]*", slider_id):
        raise ValueError(f"slider_id must be a plain HTML id, got {slider_id!r}")
    esc = html.escape
    labels_js = json.dumps([str(x) for x in labels]).replace("</", "<\\/")
    imgs = "\n".join(
        f'<img class="lth-stage-frame" data-index="{i}" alt="{esc(title)}: {esc(str(lab))}"'
        f'{"" if i == 0 else " hidden"} src="data:image/png;base64,{frame}">'
        for i, (frame, lab) in enumerate(zip(frames, labels, strict=True))
    )
    head = (f'<div class="lth-stage-title"><strong>{esc(title)}</strong></div>\n'
            if show_title else "")
    return (
        f'<div class="lth-stage-slider" id="{slider_id}" data-stage="0">\n'
        f"<style>{_SLIDER_CSS.format(id=slider_id)}</style>\n{head}"
        f'<div class="lth-stage-controls">'
        f'<input type="range" class="lth-stage-input" id="{slider_id}-input" min="0" '
        f'max="{len(frames) - 1}" step="1" value="0" aria-label="{esc(title)}">'
        f'<span class="lth-stage-label" id="{slider_id}-label">{esc(str(labels[0]))}</span>'
        f"</div>\n{imgs}\n"
        f"<script>{_SLIDER_JS.format(id_js=json.dumps(slider_id), labels_js=labels_js)}"
        f"</script>\n</div>"
    )


def widget_stage_slider(draw: Callable[[int], Figure], stages: list[int],
                        description: str = "stage"):
    """An ipywidgets VBox (IntSlider over `stages` + Output) that shows `draw(stage)`.

    ``widget_sliders`` with one axis; the box also has `.slider` and `.last_stage`. The
    figure is put into the Output as PNG display data (set on `output.outputs`), which needs
    no running kernel, so a test can move the slider and look at what was drawn.
    """
    box = widget_sliders(lambda stage: draw(stage), {"stage": sorted(stages)})
    box.slider.description = description
    return box


def widget_sliders(draw: Callable[..., Figure], axes: Mapping[str, Sequence]):
    """An ipywidgets VBox of one slider per named axis and an Output showing ``draw(**values)``.

    Figure 1 in JupyterLab: ``{"stage": [0, ..., K-1], "layer": block names}``. Integer axes
    get an IntSlider (consecutive values), others a SelectionSlider. The box has ``.sliders``
    (name -> slider), ``.output``, ``.last_values`` and ``.last_figure``; figures go into the
    Output as PNG display data, as in ``widget_stage_slider``.
    """
    import ipywidgets as widgets

    if not axes or any(len(v) == 0 for v in axes.values()):
        raise ValueError("every axis needs at least one value")
    sliders = {}
    for name, values in axes.items():
        values = list(values)
        if all(isinstance(v, numbers.Integral) for v in values):  # numpy ints too
            values = [int(v) for v in values]
            if sorted(values) != list(range(min(values), max(values) + 1)):
                raise ValueError(f"{name}: integers must be consecutive, got {values}")
            sliders[name] = widgets.IntSlider(value=min(values), min=min(values),
                                              max=max(values), description=name,
                                              continuous_update=False)
        else:
            sliders[name] = widgets.SelectionSlider(options=values, value=values[0],
                                                    description=name, continuous_update=False)

    class Sliders(widgets.VBox):
        def __init__(self) -> None:
            self.sliders, self.output = sliders, widgets.Output()
            super().__init__(children=[*sliders.values(), self.output])
            self.last_values: dict[str, Any] = {}
            self.last_figure: Figure | None = None
            for sl in sliders.values():
                sl.observe(lambda _change: self.redraw(), names="value")
            self.redraw()

        def redraw(self) -> None:
            values = {k: sl.value for k, sl in self.sliders.items()}
            fig = draw(**values)
            label = ", ".join(f"{k} {v}" for k, v in values.items())
            self.output.outputs = ({
                "output_type": "display_data",
                "data": {"image/png": figure_to_png_base64(fig),
                         "text/plain": f"<Figure: {label}>"},
                "metadata": {},
            },)
            self.last_values, self.last_figure = values, fig

        @property
        def slider(self):
            return next(iter(self.sliders.values()))

        @property
        def last_stage(self):
            return self.last_values.get("stage")

    return Sliders()
