"""Training images most likely mislabeled, from out-of-fold probabilities (``fit``'s report).

Confident learning (Northcutt, Jiang & Chuang 2021, "Confident learning: estimating
uncertainty in dataset labels", JAIR 70, §3): every class ``j`` gets a threshold
``t_j``, the mean out-of-fold probability of ``j`` over the images labelled ``j``
(its *self-confidence*). An image labelled ``i`` is counted as truly ``j`` when
``p_j >= t_j`` (the most probable such ``j`` if several); images counted under another
class than their label (the off-diagonal of the *confident joint*) are the issues
(``label_issues.csv``, the report's contact sheet).

Every training image is ranked by self-confidence, the out-of-fold probability of
its given label, lowest first (cleanlab's default label-quality score,
``rank.get_label_quality_scores``; the order the paper's ``prune by noise rate``
uses, §3.2). The issues are a subset of that ranking, in its order. Ranking the
issues before every other image instead put clean images of hard classes (flagged
by their class's threshold) ahead of flips the joint missed: on two real emoji sets
with 5% flipped labels that found 85% and 61% of the flips in the first 2 × flipped
rows, against 92% and 83% for self-confidence alone
(``benchmarks/results/fit_report.md``).

The probabilities must be out-of-fold: each image's scores come from a model that
did not see it (``fit``'s search keeps them in ``search/oof_scores.npy``, one row per
training image, mirrors averaged into it), or a model that memorized its labels
would agree with every one of them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Sequence

import numpy as np

CSV_FIELDS = ("rank", "file_name", "split", "given", "suggested", "p_given", "p_suggested")


@dataclasses.dataclass
class LabelIssues:
    """Every training image ranked by how likely its label is wrong (most likely first).

    ``order`` indexes the rows of the probabilities; ``flagged[k]`` tells whether
    ``order[k]`` is off the confident joint's diagonal; ``suggested`` (per row) is the
    class confident learning counts it under (else its most probable other class).
    """

    order: np.ndarray
    flagged: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray
    suggested_probability: np.ndarray
    thresholds: np.ndarray

    @property
    def num_flagged(self) -> int:
        return int(self.flagged.sum())

    def issues(self) -> np.ndarray:
        """Row indices of the flagged images, most likely mislabeled first."""
        return self.order[self.flagged]


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(scores / temperature)`` per row: the calibrated probabilities ``fit``'s
    head gives (the same formula as :func:`illustration_tl.heads.calibration.softmax`,
    which this stage may not import)."""
    z = np.asarray(scores, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def find(probabilities: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Confident learning over out-of-fold ``probabilities`` (n, classes) and the given
    ``labels`` (n,); see the module docstring. Rows of NaN (images outside a search's CV
    sample, which no fold scored) are never flagged and rank last."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels, np.int64)
    n, k = p.shape
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} rows of probabilities")
    scored = ~np.isnan(p).any(axis=1)
    thresholds = np.array([p[scored & (y == j), j].mean() if np.any(scored & (y == j))
                           else 1.0 for j in range(k)])
    above = (p >= thresholds[None, :]) & scored[:, None]
    masked = np.where(above, p, -np.inf)
    counted = np.argmax(masked, axis=1)
    has_any = above.any(axis=1)
    flagged_rows = has_any & (counted != y)
    others = p.copy()
    others[np.arange(n), y] = -np.inf
    suggested = np.where(flagged_rows, counted, np.argmax(others, axis=1))
    self_conf = p[np.arange(n), y]
    order = np.lexsort((np.arange(n), np.where(scored, self_conf, np.inf)))
    return LabelIssues(order, flagged_rows[order], suggested, self_conf,
                       p[np.arange(n), suggested], thresholds)


RANKINGS = ("confident_learning", "self_confidence", "normalized_margin", "adjusted_margin")


def ranking(probabilities: np.ndarray, labels: np.ndarray, method: str = "confident_learning"
            ) -> np.ndarray:
    """Every row, most likely mislabeled first, by ``method`` (Northcutt et al. 2021, §3 and
    cleanlab's ``rank.get_label_quality_scores``): ``confident_learning`` (the flagged
    images first, then the others, each by self-confidence: the ordering before this
    release, kept for the benchmark), ``self_confidence`` (p of the given label, :func:`find`'s
    order), ``normalized_margin`` (p of the
    given label minus the largest other p), ``adjusted_margin`` (the same after
    subtracting each class's threshold ``t_j`` from its column, so a class that is hard
    for every image does not fill the list)."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels, np.int64)
    if method == "confident_learning":
        found = find(p, y)
        return np.concatenate([found.order[found.flagged], found.order[~found.flagged]])
    if method == "adjusted_margin":
        p = p - find(p, y).thresholds[None, :]
    rows = np.arange(len(y))
    given = p[rows, y]
    if method == "self_confidence":
        quality = given
    elif method in ("normalized_margin", "adjusted_margin"):
        others = p.copy()
        others[rows, y] = -np.inf
        quality = given - others.max(axis=1)
    else:
        raise ValueError(f"ranking {method!r} is not one of {', '.join(RANKINGS)}")
    return np.lexsort((rows, quality))


def precision_recall_at(ranking: np.ndarray, truly_wrong: np.ndarray, k: int
                        ) -> tuple[float, float]:
    """Precision and recall of the first ``k`` rows of ``ranking`` against the boolean
    mask ``truly_wrong`` (the benchmark's planted label flips)."""
    top = np.asarray(ranking)[:k]
    hits = int(np.asarray(truly_wrong)[top].sum())
    total = int(np.asarray(truly_wrong).sum())
    return hits / max(len(top), 1), hits / total if total else float("nan")


def to_csv(result: LabelIssues, file_names: Sequence[str], splits: Sequence[str],
           labels: np.ndarray, class_names: Sequence[str]) -> str:
    """``label_issues.csv``: the flagged images, most likely mislabeled first."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for rank, i in enumerate(result.issues(), start=1):
        w.writerow([rank, file_names[i], splits[i], class_names[labels[i]],
                    class_names[result.suggested[i]], f"{result.self_confidence[i]:.4f}",
                    f"{result.suggested_probability[i]:.4f}"])
    return out.getvalue()
