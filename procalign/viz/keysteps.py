"""Timeline plot of discovered key-steps (procedure learning), under the ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from procalign.viz.alignment import pyplot


def plot_keysteps(
    pred: np.ndarray,
    truth: np.ndarray | None = None,
    out: str | Path | None = None,
    title: str = "",
    pred_names: dict[int, str] | None = None,
    truth_names: Sequence[str] | None = None,
):
    """Two colour strips over time: the predicted key-step (state id) of each of the T frames
    ``pred`` (T,) and, when given, the ground-truth step ``truth`` (T,) (-1: background, white).
    Spans are labelled with the names given. Returns the figure; writes a PNG when ``out``."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    from procalign.methods.sspl import spans

    rows = [("discovered", np.asarray(pred), pred_names or {})]
    if truth is not None:
        names = {i: n for i, n in enumerate(truth_names or [])}
        rows.insert(0, ("ground truth", np.asarray(truth), names))
    T = len(pred)
    fig, ax = plt.subplots(figsize=(max(6, min(16, T / 12)), 0.9 + 0.7 * len(rows)))
    cmap = plt.get_cmap("tab20")
    # a discovered key-step matched to a true step takes that step's colour
    truth_index = {n: i for i, n in enumerate(truth_names or [])}
    for y, (what, labels, names) in enumerate(reversed(rows)):
        for lab, a, b in spans(labels):
            code = lab
            if what == "discovered" and names.get(lab) in truth_index:
                code = truth_index[names[lab]]
            color = "white" if lab < 0 else cmap(code % 20)
            ax.add_patch(Rectangle((a - 0.5, y), b - a + 1, 0.8, facecolor=color, edgecolor="k", lw=0.4))
            if lab >= 0 and b - a + 1 >= max(2, T // 40):
                ax.text((a + b) / 2, y + 0.4, names.get(lab, str(lab)), ha="center", va="center",
                        fontsize=6, rotation=90 if b - a < T / 15 else 0)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(0, len(rows))
    ax.set_yticks([i + 0.4 for i in range(len(rows))])
    ax.set_yticklabels([r[0] for r in reversed(rows)])
    ax.set_xlabel("frame")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        plt.close(fig)
    return fig
