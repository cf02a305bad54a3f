"""Showing stage-dependent figures in both places a reader meets them.

In JupyterLab an ipywidgets slider redraws the figure from stored results; in the static
HTML book, where no kernel runs, a pre-rendered frame per stage sits behind a plain HTML
range input. ``stage_slider`` always emits the static one and, with ``widget``, the live
one (chapters ask for it where a kernel serves the page: ``setup.live_widgets``).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .plots import figure_to_png_base64, static_stage_slider, widget_stage_slider


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
