"""A reject option ("none of these") for ``fit`` models: answer ``unknown`` when the top
calibrated probability is below a threshold chosen on the cross-validation folds.

Selective classification (Geifman & El-Yaniv 2017, "Selective classification for deep
neural networks", NeurIPS, §2-§3): a classifier ``f`` with a selection function
``g(x) = [kappa(x) >= t]`` answers only where ``g`` accepts. Its *coverage* is the
fraction of inputs accepted, its *selective risk* the error rate on them; sweeping
``t`` over the confidence values draws the *risk-coverage curve*, and the threshold
is the one giving the largest coverage whose risk is within a target (here: whose
accuracy on the accepted rows, the precision of the answers, reaches
``target_precision``). The confidence ``kappa`` is the top softmax probability, the
baseline of Hendrycks & Gimpel 2017 ("A baseline for detecting misclassified and
out-of-distribution examples in neural networks", ICLR, §2), here after ``fit``'s
temperature calibration; the same score separates in-domain from out-of-domain
images, measured by the AUROC (their Table 2).

The probabilities must be out-of-fold (``search/oof_scores.npy`` through the head's
calibrated softmax), so the threshold is chosen on images the scoring model did not
see. Pure numpy; rows of NaN (images outside a search's CV sample) are ignored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

UNKNOWN = "unknown"
"""The answer given to an input whose top probability is below the threshold."""

REJECT_FILE = "reject.json"
"""The chosen threshold, in ``fit``'s ``OUT/reject/`` stage folder."""

DEFAULT_TARGET_PRECISION = 0.95


@dataclasses.dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve (Geifman & El-Yaniv 2017, §2): one point per distinct
    confidence value ``thresholds[i]`` (descending), accepting every row whose top
    probability is at least it; ``coverage`` and ``accuracy`` on the accepted rows
    (risk = 1 - accuracy)."""

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray
    num_rows: int

    @property
    def risk(self) -> np.ndarray:
        return 1.0 - self.accuracy


@dataclasses.dataclass(frozen=True)
class RejectThreshold:
    """The chosen threshold: accept an input when its top probability is ``>= threshold``.

    ``target``: the precision asked for; ``coverage`` and ``accuracy``: on the rows it
    was chosen on (the out-of-fold probabilities); ``reached``: whether ``accuracy >=
    target`` (False: the fallback of :func:`choose_threshold`); ``num_rows``: how many
    rows it was chosen on."""

    threshold: float
    target: float
    coverage: float
    accuracy: float
    reached: bool
    num_rows: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Any) -> RejectThreshold:
        """The threshold of a JSON object written by :meth:`to_dict`; ``ValueError``
        (one line) for anything else, e.g. the metadata of a model from elsewhere."""
        if not isinstance(doc, dict):
            raise ValueError("the reject threshold is not a JSON object")
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = doc.get(f.name)
            if f.type == "bool":
                ok = isinstance(value, bool)
            elif f.type == "int":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            else:
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                      and math.isfinite(value) and 0.0 <= value <= 1.0)
            if not ok:
                raise ValueError(f"the reject threshold's `{f.name}` is missing or out of "
                                 "range")
            out[f.name] = value
        return cls(**out)

    def accepts(self, probabilities: np.ndarray) -> np.ndarray:
        """Per row of ``probabilities`` (n, classes): whether its top probability is at
        least the threshold (a row of NaN is never accepted)."""
        return accepted(probabilities, self.threshold)

    def words(self) -> str:
        """The threshold, its target, coverage and accuracy in one sentence."""
        how = (f"the one with the largest coverage at {100 * self.target:.0f}% precision or "
               "more" if self.reached else f"no threshold reaches {100 * self.target:.0f}% "
               "precision there, so it is the most accurate one (fallback)")
        return (f'answer "{UNKNOWN}" below a top probability of {self.threshold:.3f}, '
                f"chosen on the cross-validation folds ({how}): there it answers "
                f"{100 * self.coverage:.1f}% of {self.num_rows} images, "
                f"{100 * self.accuracy:.1f}% of them right")


def _rows(probabilities: np.ndarray, labels: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (rows, classes); got shape {p.shape}")
    if labels is not None and len(labels) != len(p):
        raise ValueError(f"{len(labels)} labels for {len(p)} rows of probabilities")
    scored = ~np.isnan(p).any(axis=1)
    return p[scored], None if labels is None else np.asarray(labels, np.int64)[scored]


def confidence(probabilities: np.ndarray) -> np.ndarray:
    """The top probability of each row (Hendrycks & Gimpel 2017's maximum softmax
    probability); NaN for a row of NaN."""
    p = np.asarray(probabilities, np.float64)
    out = np.full(len(p), np.nan)
    scored = ~np.isnan(p).any(axis=1)
    if scored.any():
        out[scored] = p[scored].max(axis=1)
    return out


def accepted(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each row's top probability is at least ``threshold`` (NaN rows: False)."""
    conf = confidence(probabilities)
    return np.where(np.isnan(conf), False, conf >= threshold)


def risk_coverage(probabilities: np.ndarray, labels: np.ndarray) -> RiskCoverage:
    """The risk-coverage curve of top-1 answers (Geifman & El-Yaniv 2017, §2): for each
    distinct top probability ``t`` (descending; tied rows are accepted together), the
    fraction of rows with top probability ``>= t`` and the top-1 accuracy on them."""
    p, y = _rows(probabilities, labels)
    if len(p) == 0:
        empty = np.zeros(0)
        return RiskCoverage(empty, empty, empty, 0)
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    hits = np.cumsum(correct)
    # The last row of each run of equal confidence: a threshold accepts the whole run.
    last = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True])
    taken = last + 1
    return RiskCoverage(conf[last], taken / len(p), hits[last] / taken, len(p))


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray,
                     target_precision: float = DEFAULT_TARGET_PRECISION) -> RejectThreshold:
    """The top-probability threshold giving the largest coverage whose accuracy on the
    accepted rows is at least ``target_precision`` (Geifman & El-Yaniv 2017, §3's
    selection with a risk bound, ``r* = 1 - target_precision``, taken on the curve
    itself, without their confidence bound).

    Fallback when no threshold reaches the target: the threshold of the highest
    accuracy on the curve (the largest coverage among equals), with ``reached=False``;
    a model that cannot reach the target then still rejects its least confident
    answers rather than none. ``ValueError`` when no row is scored."""
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision {target_precision}: give a number in (0, 1]")
    curve = risk_coverage(probabilities, labels)
    if curve.num_rows == 0:
        raise ValueError("no scored rows to choose a reject threshold on")
    # The tolerance keeps a tie at the target (e.g. 19 of 20 at 0.95) on the right side.
    ok = np.flatnonzero(curve.accuracy >= target_precision - 1e-12)
    if len(ok):
        i, reached = int(ok[-1]), True
    else:
        best = curve.accuracy.max()
        i, reached = int(np.flatnonzero(curve.accuracy == best)[-1]), False
    return RejectThreshold(float(curve.thresholds[i]), float(target_precision),
                           float(curve.coverage[i]), float(curve.accuracy[i]), reached,
                           curve.num_rows)


def at_threshold(probabilities: np.ndarray, labels: np.ndarray, threshold: float
                 ) -> tuple[float, float | None]:
    """(coverage, top-1 accuracy on the accepted rows) of ``threshold`` on other rows (the
    test split); accuracy None when nothing is accepted."""
    p, y = _rows(probabilities, labels)
    if len(p) == 0:
        return 0.0, None
    keep = p.max(axis=1) >= threshold
    if not keep.any():
        return 0.0, None
    return float(keep.mean()), float(np.mean(np.argmax(p[keep], axis=1) == y[keep]))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    v = np.asarray(values, np.float64)
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse.reshape(-1)]


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """The area under the ROC curve of telling in-domain from out-of-domain inputs by a
    score that should be higher in-domain (Hendrycks & Gimpel 2017, §3: the top softmax
    probability): the Mann-Whitney statistic ``P(in > out) + P(in = out) / 2``, from
    average ranks so ties count half. NaN scores are dropped; ValueError when either
    side is empty."""
    a = np.asarray(in_scores, np.float64).reshape(-1)
    b = np.asarray(out_scores, np.float64).reshape(-1)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("AUROC needs at least one in-domain and one out-of-domain score")
    ranks = average_ranks(np.concatenate([a, b]))
    u = ranks[:len(a)].sum() - len(a) * (len(a) + 1) / 2.0
    return float(u / (len(a) * len(b)))
