"""The run report's figures, one style for the paper pipeline (``report``) and ``fit``'s
``report.html`` (paper §7: confusion matrices, Figure 6's t-SNE, Figure 8's failures,
Figures 1 and 7's side-by-side predictions, and the reliability diagram).

Figures are drawn with matplotlib's Agg backend at a fixed size per layout (no tight
bounding box), so their pixel sizes are known in advance and recorded in ``report.json``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.evaluation.metrics import EvalResult, top_k_indices

DPI = 100
TILE_INCHES = 2.2          # one image tile in the failure and comparison grids

ImageLoader = Callable[[str], "np.ndarray | None"]


def pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.2f}"


@dataclasses.dataclass
class TsneInput:
    """Embeddings to draw as a t-SNE map."""

    name: str
    x: np.ndarray
    y: np.ndarray
    class_names: list[str]



# --- Figures ---------------------------------------------------------------------------

def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> dict[str, Any]:
    plt = _pyplot()
    width, height = fig.get_size_inches()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return {"file": os.path.basename(path), "width": int(round(width * DPI)),
            "height": int(round(height * DPI))}


CELL_INCHES = 0.45          # a confusion-matrix row in the paper pipeline's report
PAGE_CELL_INCHES = 0.2      # in report.html: 50 classes fit a page's width


def confusion_figsize(num_classes: int, cell_inches: float = CELL_INCHES
                      ) -> tuple[float, float]:
    side = float(min(max(3.0 + cell_inches * num_classes, 5.0), 40.0))
    return side + 1.0, side


def plot_confusion(result: EvalResult, path: str, cell_inches: float = CELL_INCHES
                   ) -> dict[str, Any]:
    """Row-normalized confusion matrix; counts written in the cells when they fit."""
    plt = _pyplot()
    names, counts = result.confusion()
    other = counts[:, -1].sum() > 0
    matrix = counts if other else counts[:, :-1]
    cols = names + (["other"] if other else [])
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=confusion_figsize(len(names), cell_inches))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.model_name}: top-1 {pct(result.top_k(1))}%", fontsize=9)
    if len(names) <= 30:
        for i in range(len(names)):
            for j in range(len(cols)):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.subplots_adjust(left=0.22, bottom=0.22, right=0.9, top=0.94)
    return _save(fig, path)


TSNE_FIGSIZE = (9.0, 7.0)


TSNE_MIN_POINTS = 5  # fewer points than this make no map worth drawing


def plot_tsne(data: TsneInput, path: str, max_points: int = 2000, seed: int = 0
              ) -> dict[str, Any]:
    """t-SNE of embeddings, coloured by class (Figure 6)."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    idx = np.arange(len(data.y))
    if len(idx) > max_points:
        idx = np.sort(rng.choice(idx, max_points, replace=False))
    if len(idx) < TSNE_MIN_POINTS:
        raise UserError(f"t-SNE of {data.name!r} needs at least {TSNE_MIN_POINTS} embeddings, "
                        f"got {len(idx)}")
    perplexity = float(min(30.0, max(2.0, (len(idx) - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
              random_state=seed).fit_transform(np.asarray(data.x[idx], dtype=np.float64))
    fig, ax = plt.subplots(figsize=TSNE_FIGSIZE)
    labels = data.y[idx]
    present = np.unique(labels)
    colors = 10 if len(present) <= 10 else 20
    cmap = plt.get_cmap(f"tab{colors}")
    for k, c in enumerate(present):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=10, color=cmap(k % colors),
                   marker="osD^v<>"[k // colors % 7], label=data.class_names[c])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {data.name} ({len(idx)} embeddings)", fontsize=10)
    if len(np.unique(labels)) <= 40:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=1.5)
    fig.subplots_adjust(left=0.03, right=0.75, top=0.94, bottom=0.03)
    return _save(fig, path)


def grid_figsize(tiles: int, columns: int) -> tuple[float, float]:
    cols = max(1, min(columns, tiles))
    rows = max(1, -(-tiles // cols))
    return cols * TILE_INCHES, rows * (TILE_INCHES + 0.6)


def _show(ax: Any, image: np.ndarray | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8)
    else:
        ax.imshow(image)


def most_confident_failures(result: EvalResult, n: int) -> list[int]:
    """Indices of wrong top-1 predictions, most confident (highest predicted score) first."""
    pred = result.predictions()
    wrong = np.flatnonzero(pred != result.labels)
    conf = result.scores[wrong, pred[wrong]]
    return wrong[np.argsort(-conf, kind="stable")][:n].tolist()


def plot_failures(result: EvalResult, load_image: ImageLoader, path: str, n: int = 16,
                  columns: int = 4) -> dict[str, Any] | None:
    """Grid of the most confident failures (Figure 8); None when there are none."""
    if result.file_names is None:
        raise UserError(f"{result.model_name}: the result has no file names, so its images "
                        "cannot be shown")
    picks = most_confident_failures(result, n)
    if not picks:
        return None
    plt = _pyplot()
    size = grid_figsize(len(picks), columns)
    cols = max(1, min(columns, len(picks)))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    pred = result.predictions()
    for ax in axes.flat[len(picks):]:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        _show(ax, load_image(result.file_names[i]))
        ax.set_title(f"true: {_short(result.class_names[result.labels[i]])}\n"
                     f"pred: {_short(result.class_names[pred[i]])} "
                     f"({result.scores[i, pred[i]]:.3g})", fontsize=7)
    fig.suptitle(f"{result.model_name}: most confident failures", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.55 / size[1],
                        hspace=0.45, wspace=0.1)
    return _save(fig, path)


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def comparison_picks(a: EvalResult, b: EvalResult, n: int) -> list[tuple[int, int]]:
    """Pairs of example indices (in ``a``, in ``b``) of the same images, most telling first:
    ``b`` right and ``a`` wrong, then ``a`` right and ``b`` wrong, then both wrong, then
    both right; file-name order within each group."""
    if a.file_names is None or b.file_names is None:
        raise UserError("comparing two models needs results with file names")
    where_b = {f: i for i, f in enumerate(b.file_names)}
    pa, pb = a.predictions(), b.predictions()
    ranked = []
    for i, f in enumerate(a.file_names):
        j = where_b.get(f)
        if j is None:
            continue
        ok_a = a.class_names[pa[i]] == a.class_names[a.labels[i]]
        ok_b = b.class_names[pb[j]] == b.class_names[b.labels[j]]
        group = [(False, True), (True, False), (False, False), (True, True)].index((ok_a, ok_b))
        ranked.append((group, f, i, j))
    if not ranked:
        raise UserError(f"{a.model_name!r} and {b.model_name!r} share no test images")
    return [(i, j) for _, _, i, j in sorted(ranked)[:n]]


def comparison_figsize(rows: int) -> tuple[float, float]:
    return 3 * TILE_INCHES, max(1, rows) * TILE_INCHES


def plot_comparison(a: EvalResult, b: EvalResult, load_image: ImageLoader, path: str,
                    n: int = 8, k: int = 3) -> dict[str, Any]:
    """Top-k predictions of two models on the same images (Figures 1 and 7)."""
    plt = _pyplot()
    picks = comparison_picks(a, b, n)
    fig, axes = plt.subplots(len(picks), 3, figsize=comparison_figsize(len(picks)),
                             squeeze=False)
    top_a, top_b = top_k_indices(a.scores, k), top_k_indices(b.scores, k)
    for row, (i, j) in enumerate(picks):
        _show(axes[row, 0], load_image(a.file_names[i]))
        axes[row, 0].set_title(f"true: {_short(a.class_names[a.labels[i]])}", fontsize=7)
        for col, (res, top, idx) in enumerate([(a, top_a, i), (b, top_b, j)], start=1):
            ax = axes[row, col]
            ax.axis("off")
            true = res.class_names[res.labels[idx]]
            lines = [f"{res.model_name}"] + [
                f"{r + 1}. {_short(res.class_names[c], 26)}" + ("  ✓" if
                                                                res.class_names[c] == true
                                                                else "")
                for r, c in enumerate(top[idx])]
            ax.text(0.0, 0.9, "\n".join(lines), va="top", ha="left", fontsize=7,
                    transform=ax.transAxes, family="DejaVu Sans")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.95, hspace=0.3, wspace=0.05)
    return _save(fig, path)


RELIABILITY_FIGSIZE = (5.5, 4.5)


def plot_reliability(curves: list[tuple[str, Any]], path: str) -> dict[str, Any]:
    """Reliability diagram (Guo et al. 2017, Figure 1): accuracy against mean top-1
    probability per confidence bin, one line per :class:`metrics.Reliability`, with its
    expected calibration error in the legend; the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=RELIABILITY_FIGSIZE)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect")
    for (name, rel), marker in zip(curves, "os^D"):
        full = rel.counts > 0
        ax.plot(rel.confidence[full], rel.accuracy[full], marker=marker, markersize=4,
                label=f"{name}: ECE {100 * rel.ece:.1f}% ({int(rel.counts.sum())} images)")
    ax.set_ylim(0, 1)
    return _finish_curves(fig, ax, path, "mean top-1 probability in the bin",
                          "top-1 accuracy in the bin", "upper left")


RISK_COVERAGE_FIGSIZE = (5.5, 4.5)


def plot_risk_coverage(curves: list[tuple[str, Any]], path: str,
                       chosen: tuple[float, float] | None = None,
                       label: str = "chosen threshold") -> dict[str, Any]:
    """Risk-coverage curves (Geifman & El-Yaniv 2017, Figure 1): selective risk (top-1
    error on the accepted images) against coverage (the share accepted), one line per
    :class:`reject.RiskCoverage`, as the top-probability threshold sweeps from high to
    low; ``chosen`` (coverage, risk) marks the reject threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=RISK_COVERAGE_FIGSIZE)
    for name, curve in curves:
        if curve.num_rows == 0:
            continue
        ax.plot(curve.coverage, curve.risk, marker="." if curve.num_rows <= 50 else None,
                label=f"{name} ({curve.num_rows} images)")
    if chosen is not None:
        ax.plot([chosen[0]], [chosen[1]], marker="o", markersize=8, color="black",
                fillstyle="none", linestyle="none", label=label)
        ax.axvline(chosen[0], color="0.6", linestyle="--", linewidth=1)
    ax.set_ylim(bottom=0)
    return _finish_curves(fig, ax, path, "coverage (share of images answered)",
                          "risk (top-1 error on the answered images)", "best")


def _finish_curves(fig: Any, ax: Any, path: str, xlabel: str, ylabel: str,
                   legend: str) -> dict[str, Any]:
    """The common frame of the report's curve plots (x from 0 to 1, a small legend, a
    light grid), saved to ``path``."""
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc=legend, fontsize=7)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.96)
    return _save(fig, path)
