"""Plots of alignments: the similarity matrix with the DTW path and the mined step blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_alignment(
    sim: np.ndarray,
    path: np.ndarray | None = None,
    bounds_a: np.ndarray | None = None,
    bounds_b: np.ndarray | None = None,
    out: str | Path | None = None,
    title: str = "",
    labels_a: np.ndarray | None = None,
    labels_b: np.ndarray | None = None,
):
    """Draw ``sim`` (N, M) with the DTW ``path`` (N, M) and the step blocks given by ``bounds``.

    Optional per-frame ground-truth labels (N,), (M,) are drawn as colour strips on the axes.
    Returns the matplotlib figure; writes a PNG when ``out`` is given.
    """
    plt = pyplot()
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(6, 5.4))
    im = ax.imshow(sim, cmap="viridis", aspect="auto", origin="upper", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.08, label="similarity")
    if path is not None:
        ii, jj = np.nonzero(path)
        order = np.lexsort((jj, ii))
        ax.plot(jj[order], ii[order], color="white", lw=1.5, label="DTW path")
    if bounds_a is not None and bounds_b is not None:
        cmap = plt.get_cmap("tab10")
        for k in range(len(bounds_a) - 1):
            r0, r1 = bounds_a[k], bounds_a[k + 1]
            c0, c1 = bounds_b[k], bounds_b[k + 1]
            ax.add_patch(
                Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, lw=2.0,
                          edgecolor=cmap(k % 10), label="mined steps" if k == 0 else None)
            )
            ax.text(c0, r0, str(k + 1), color=cmap(k % 10), fontsize=8, va="top", ha="left",
                    fontweight="bold")
    for labels, axis in ((labels_a, "y"), (labels_b, "x")):
        if labels is None:
            continue
        codes = np.unique(np.asarray(labels), return_inverse=True)[1]
        strip = codes[None, :] if axis == "x" else codes[:, None]
        ins = ax.inset_axes([0, 1.01, 1, 0.04] if axis == "x" else [1.01, 0, 0.04, 1])
        ins.imshow(strip, aspect="auto", cmap="tab20", interpolation="nearest")
        ins.set_axis_off()
    ax.set_xlabel("frames of B")
    ax.set_ylabel("frames of A")
    if title:
        ax.set_title(title, pad=14)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.6)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        plt.close(fig)
    return fig
