"""The report toolkit eval-bag and replay share: percentiles, thinned series, the latency
histogram and confusion-matrix figures, the page header, and the output-folder rules.

A figure is ``{"png": bytes, "caption": str, "json": its data}``: the PNG goes into the HTML page,
the data into report.json, so every plot can be redrawn or checked from the JSON alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.atomic_io import write_json
from dann_ros.data.labels import bag_base
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.result_bag import OutputExistsError

MAX_SERIES_POINTS = 5000  # per-frame series in report.json are thinned to this many points


def figure(png: bytes, caption: str, data: dict) -> dict:
    return {"png": png, "caption": caption, "json": data}


def percentiles(values: Any) -> dict[str, float | None]:
    """n, mean, p50, p90, p99 and max of the finite values (all None when there are none)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not values.size:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": int(values.size), "mean": float(values.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(values.max())}


def thin(*arrays: Any, max_points: int = MAX_SERIES_POINTS) -> list[list]:
    """Every k-th point of equally long series, so report.json stays small for long bags."""
    n = len(arrays[0])
    step = max(1, int(np.ceil(n / max_points)))
    return [np.asarray(a)[::step].tolist() for a in arrays]


def latency_histogram(series: Mapping[str, Any], title: str, xlabel: str, caption: str, extra: dict | None = None,
                      bins: int = 40) -> dict:
    """Histogram of millisecond series; values above the p99.5 of all of them land in the last bin."""
    clean = {k: np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for k, v in series.items()}
    values = np.concatenate(list(clean.values())) if clean else np.empty(0)
    top = max(float(np.percentile(values, 99.5)), 1e-3) if values.size else 1.0
    edges = np.linspace(0.0, top, bins + 1)
    clipped = {k: np.minimum(v, top) for k, v in clean.items()}
    return figure(plots.histogram(clipped, edges, title, xlabel), caption,
                  {"title": title, "bin_edges_ms": edges.tolist(),
                   **{k: np.histogram(v, edges)[0].tolist() for k, v in clipped.items()}, **(extra or {})})


def confusion_figure(matrix: Any, classes: Sequence[str], title: str, caption: str) -> dict:
    matrix = np.asarray(matrix, np.int64)
    png = plots.confusion_matrix(matrix, classes, title) if matrix.sum() else plots.bars([], {}, title, "", "")
    return figure(png, caption, {"title": "Confusion matrix", "classes": list(classes), "rows": "true class",
                                 "columns": "predicted class", "matrix": matrix.tolist()})


def page_header(title: str, rows: Sequence[tuple[str, Any]], notes: Sequence[tuple[str, str]] = ()) -> H.Page:
    """A report page that opens with its key facts and then its warnings (text, level)."""
    page = H.Page(title)
    page.keyvalues(list(rows))
    for text, level in notes:
        if text:
            page.note(str(text), level)
    return page


def show_figures(page: H.Page, figures: Mapping[str, dict], names: Sequence[str]) -> None:
    for name in names:
        if name in figures:
            page.figure(figures[name]["png"], figures[name]["caption"])


# --------------------------------------------------------------------------- output folders
def default_out_dir(bag: str | Path, kind: str = "eval") -> Path:
    """``/data/run1.bag`` -> ``/data/run1.bag.eval`` (``.replay``): next to the bag, whatever form it was given in."""
    base = bag_base(bag)
    return base.with_name(f"{base.name}.{kind}")


def claim_bag_output(path: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """A bag folder about to be written: refuse to replace an earlier one unless asked to."""
    if not path.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"{path} exists already; pass {flag} or choose another --out")
    shutil.rmtree(path)


def write_reports(out: Path, report: dict, figures: Mapping[str, dict], page: H.Page | None) -> None:
    """report.json (with every figure's data) and, given a page, report.html."""
    out.mkdir(parents=True, exist_ok=True)
    report["figures"] = {k: v["json"] for k, v in figures.items()}
    write_json(out / "report.json", H.jsonable(report), indent=1, allow_nan=False)
    if page is not None:
        page.write(out / "report.html")
