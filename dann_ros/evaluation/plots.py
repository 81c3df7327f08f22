"""Report figures as PNG bytes (matplotlib, Agg): one style for every report, sized to read
without zooming (titles, labelled axes, 11-13 pt text)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

STYLE = {
    "font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 10, "ytick.labelsize": 10,
    "legend.fontsize": 10, "figure.dpi": 100, "savefig.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure(width: float = 6.2, height: float = 3.9):
    plt = _plt()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(True, alpha=0.3)
    return fig, ax


def to_png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=STYLE["axes.titlesize"])
    ax.set_xlabel(xlabel, fontsize=STYLE["axes.labelsize"])
    ax.set_ylabel(ylabel, fontsize=STYLE["axes.labelsize"])
    ax.tick_params(labelsize=STYLE["xtick.labelsize"])


def confusion_matrix(cm: np.ndarray, classes: Sequence[str], title: str = "Confusion matrix",
                     ax=None) -> bytes | None:
    """Rows = true class, columns = predicted; colour = share of the row, text = count."""
    cm = np.asarray(cm)
    k = len(classes)
    own = ax is None
    if own:
        size = min(3.6 + 0.36 * k, 12)
        fig, ax = figure(size + 1.0, size)
        ax.grid(False)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    ticks = np.arange(k)
    ax.set_xticks(ticks, labels=list(classes), rotation=45 if max(map(len, classes), default=0) > 3 else 0, ha="right"
                  if max(map(len, classes), default=0) > 3 else "center")
    ax.set_yticks(ticks, labels=list(classes))
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=9 if k > 12 else 10,
                            color="white" if share[i, j] > 0.6 else "black")
    style(ax, title, "predicted class", "true class")
    if own:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
        return to_png(fig)
    return None


def bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], title: str, xlabel: str,
         ylabel: str, ylim: tuple[float, float] | None = None) -> bytes:
    fig, ax = figure(max(6.2, 0.3 * len(categories) * max(1, len(series)) + 2), 3.9)
    x = np.arange(len(categories))
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        vals = np.array([np.nan if v is None else v for v in values], float)
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=name)
    ax.set_xticks(x, labels=list(categories), rotation=45 if len(categories) > 12 else 0)
    if ylim:
        ax.set_ylim(*ylim)
    if len(series) > 1:
        ax.legend()
    style(ax, title, xlabel, ylabel)
    return to_png(fig)


def histogram(series: Mapping[str, np.ndarray], bins: np.ndarray | int, title: str, xlabel: str,
              ylabel: str = "frames", log: bool = False) -> bytes:
    fig, ax = figure()
    for name, values in series.items():
        values = np.asarray(values, float)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=bins, alpha=0.6 if len(series) > 1 else 0.9, label=f"{name} (n={values.size})")
    if log:
        ax.set_yscale("log")
    if series:
        ax.legend()
    style(ax, title, xlabel, ylabel)
    return to_png(fig)


def lines(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
          hlines: Mapping[str, float] | None = None, ylim: tuple[float, float] | None = None,
          ax=None, marker: str | None = None, integer_x: bool = False) -> bytes | None:
    own = ax is None
    if own:
        fig, ax = figure()
    for name, (x, y) in series.items():
        ax.plot(np.asarray(x, float), np.asarray(y, float), label=name, linewidth=1.5, marker=marker,
                markersize=4)
    for name, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(name, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=9,
                    color="dimgrey")
    if ylim:
        ax.set_ylim(*ylim)
    if integer_x:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(series) > 1 or (series and own is False):
        ax.legend()
    style(ax, title, xlabel, ylabel)
    return to_png(fig) if own else None
