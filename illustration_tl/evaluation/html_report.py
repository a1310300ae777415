"""``OUT/report.html``: one self-contained page about a finished ``fit`` run (issue 22).

Everything is inlined (figures as base64 PNG, image thumbnails as base64 JPEG, the
style sheet in the page): it opens offline and can be mailed as one file. Sections
(each a ``<section id=...>``, the ids in :data:`SECTIONS`):

* ``summary``: test top-1/top-5 with a 95% Wilson interval, the chosen configuration
  in plain words, warnings (classes with fewer than :data:`FEW_TEST_IMAGES` test images,
  train/test duplicates);
* ``per-class``: per-class support, top-1/top-5 (the paper's Table 4 for the user's
  folder), precision, recall and F1;
* ``confusion``: the confusion matrix (drawn as ``report``'s, paper §7);
* ``misclassified``: the wrong test images, most confident first, with their top-3
  probabilities;
* ``calibration``: the reliability diagram and expected calibration error, on the test
  split and on the cross-validation's out-of-fold predictions;
* ``reject``: the risk-coverage curve of the out-of-fold and test predictions with the
  reject threshold marked, and what it does in words (:mod:`reject`);
* ``leaderboard``: the search's top 10 with their fold counts (full table:
  ``search/leaderboard.md``);
* ``label-issues``: training images most likely mislabeled (:mod:`label_issues`);
* ``duplicates``: exact and near duplicates (:mod:`duplicates`).

Beside it, ``OUT/label_issues.csv`` and ``OUT/duplicates.csv``.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import files
from illustration_tl.evaluation import (
    duplicates,
    figures,
    fit_run,
    label_issues,
    reject,
    report,
)
from illustration_tl.evaluation.metrics import (
    precision_recall_f1,
    reliability,
    top_k_indices,
    wilson_interval,
)

REPORT_HTML = "report.html"
LABEL_ISSUES_CSV = "label_issues.csv"
DUPLICATES_CSV = "duplicates.csv"
LOOKALIKE_SHARE = 0.5   # of the test split flagged: the threshold sees look-alikes
SECTIONS = ("summary", "per-class", "confusion", "misclassified", "calibration", "reject",
            "leaderboard", "label-issues", "duplicates")
FEW_TEST_IMAGES = 5
MAX_MISCLASSIFIED = 60
MAX_LABEL_ISSUES = 48
MAX_DUPLICATE_PAIRS = 40
LEADERBOARD_ROWS = 10

STYLE = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;
margin-top:28px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;
padding:3px 7px;text-align:left}td.n{text-align:right;white-space:nowrap}
th{background:#f0f4f8}.warn{background:#fff4e0;border-left:4px solid #e69500;padding:6px 10px;
margin:6px 0}.grid{display:flex;flex-wrap:wrap;gap:10px}.tile{width:170px;font-size:11px;
border:1px solid #ddd;padding:4px;background:#fafafa;overflow-wrap:break-word}
.tile img{display:block;margin:0 auto 4px auto;max-width:96px;max-height:96px}
.pair{display:flex;gap:4px}.pair img{max-width:79px;max-height:79px}.bad{color:#b00}
.ok{color:#070}.fig img{max-width:100%;height:auto}
.note{color:#555;font-size:13px}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _name(text: Any) -> str:
    """Escaped text of a class or file name in a tile: it may break after ``_``, ``-``,
    ``/`` and ``.`` only, not in the middle of a word."""
    return re.sub(r"([_\-/.])", r"\1<wbr>", _e(text))


def _pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}%"


def _img(data: bytes | None, mime: str = "image/jpeg", alt: str = "") -> str:
    if data is None:
        return f'<div class="note">({_e(alt or "image not found")})</div>'
    return (f'<img alt="{_e(alt)}" src="data:{mime};base64,'
            f'{base64.b64encode(data).decode("ascii")}">')


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _numeric(cell: Any) -> bool:
    """Whether a cell is a number, a percentage, an interval or ``k of n`` (right-aligned)."""
    return isinstance(cell, (int, float)) or bool(re.fullmatch(
        r"(n/a|[\d.]+%?( – [\d.]+%?)?|\d+ of \d+)", str(cell)))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f'<td class="n">{c}</td>' if _numeric(c) else f"<td>{c}</td>"
                             for c in r) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


# --- Plain words ---------------------------------------------------------------------

def describe_config(cfg: dict[str, Any], temperature: float | None = None) -> str:
    """The chosen configuration as a sentence (:class:`heads.search.Config` fields)."""
    layers: dict[str, list[str]] = {}
    for b in cfg.get("blocks", []):
        layer, _, pool = b.rpartition(":")
        if b == "paper":
            layers.setdefault("the paper's embedding (fc2, or the pooled last block)", [])
        else:
            layers.setdefault(layer, []).append({"avg": "average", "max": "max",
                                                 "cls": "class-token"}.get(pool, pool))
    feats = "; ".join(f"{layer} ({' and '.join(p)}-pooled)" if p else layer
                      for layer, p in layers.items())
    resize = {"squash": "resized to a square, aspect ratio ignored",
              "pad": "padded to a white square, then resized"}.get(cfg.get("resize"),
                                                                    str(cfg.get("resize")))
    parts = [f"Images {resize}. Features: {feats}."]
    if cfg.get("flip_train"):
        parts.append("Trained on the images and their mirror images.")
    if cfg.get("flip_test"):
        parts.append("Each test image's scores are averaged with its mirror image's.")
    parts.append({"none": "Features used as they are.",
                  "standard": "Features standardized (zero mean, unit variance).",
                  "l2": "Each block signed-square-rooted and l2-normalized, the whole vector "
                        "l2-normalized.",
                  "power_l2": "Signed square root, then l2 normalization."}.get(
        cfg.get("norm"), f"Normalization {cfg.get('norm')}."))
    if cfg.get("classifier") == "logreg":
        parts.append(f"Classifier: logistic regression (C={cfg.get('C'):g}).")
    else:
        how = ("one-vs-rest (one SVM per class)" if cfg.get("multiclass") == "ovr"
               else "one-vs-one (one SVM per pair of classes)")
        gamma = "" if cfg.get("kernel") == "linear" else f", γ = {cfg.get('gamma')}"
        parts.append(f"Classifier: {cfg.get('kernel')}-kernel SVM (C={cfg.get('C'):g}"
                     f"{gamma}), {how}.")
    if temperature is not None:
        parts.append(f"Probabilities: softmax of the scores at temperature "
                     f"{temperature:.3g}, fitted on the cross-validation folds.")
    return " ".join(parts)


# --- Sections ------------------------------------------------------------------------

def _summary(run: fit_run.FitRun, leaks: int, leaked_test: int) -> str:
    r = run.result
    n = r.num_examples
    rows = []
    for k in (1, 5):
        v = r.top_k_or_none(k)
        if v is None:
            rows.append([f"top-{k}", "n/a", f"n/a ({len(r.class_names)} classes)"])
            continue
        lo, hi = wilson_interval(int(round(v * n)), n)
        rows.append([f"top-{k}", _pct(v), f"{_pct(lo)} – {_pct(hi)}"])
    body = [f"<p>Test split: <b>{n}</b> images, {len(r.class_names)} classes, scored once "
            "by the model fitted on the training splits (train + validation).</p>",
            _table(["", "accuracy", "95% interval (Wilson)"], rows),
            f"<p><b>Chosen configuration</b> (CV top-1 {_pct(run.board['chosen']['cv_top1'])}"
            f" over {run.board['chosen'].get('folds', '?')} folds): "
            f"{_e(describe_config(run.chosen, run.temperature))}</p>"]
    counts = np.bincount(r.labels, minlength=len(r.class_names))
    few = [(r.class_names[c], int(counts[c])) for c in range(len(r.class_names))
           if counts[c] < FEW_TEST_IMAGES]
    if few:
        which = ("every class: a small folder's per-class numbers are anecdotes"
                 if len(few) == len(r.class_names) else
                 "anecdotes: " + ", ".join(f"{_e(c)} ({k})" for c, k in few))
        body.append(f'<div class="warn">{len(few)} of {len(r.class_names)} classes have fewer '
                    f"than {FEW_TEST_IMAGES} test images, so their per-class numbers are "
                    f"{which}</div>")
    if leaks:
        body.append(f'<div class="warn">{leaked_test} test images have a near or exact '
                    f"duplicate in the training splits ({leaks} pairs): the test score is "
                    'inflated (<code>fit --dedupe</code> puts each group on one side). '
                    'See <a href="#duplicates">duplicates</a>.</div>')
    return _section("summary", "Test accuracy", "\n".join(body))


def _per_class(run: fit_run.FitRun) -> str:
    r = run.result
    t4 = {row["class"]: row for row in report.table4([r])}
    prf = precision_recall_f1(r.labels, r.predictions(), len(r.class_names))
    rows = []
    for c, m in enumerate(prf):
        name = r.class_names[c]
        acc = t4.get(name, {}).get(r.model_name) or {}
        flag = ' <span class="bad">(few)</span>' if m["support"] < FEW_TEST_IMAGES else ""
        rows.append([_e(name) + flag, m["support"], _pct(acc.get("top1")),
                     _pct(acc.get("top5")), _pct(m["precision"]), _pct(m["recall"]),
                     _pct(m["f1"])])
    note = ('<p class="note">Top-1 of a class is its recall. Table 4 of the paper for this '
            "folder; top-5 is n/a with 5 classes or fewer.</p>")
    return _section("per-class", "Per class", note + _table(
        ["class", "test images", "top-1", "top-5", "precision", "recall", "F1"], rows))


def _figure(draw: Callable[[str], Any], tmp: str, name: str) -> bytes:
    path = os.path.join(tmp, name)
    draw(path)
    with open(path, "rb") as f:
        return f.read()


def _confusion(run: fit_run.FitRun, tmp: str) -> str:
    png = _figure(lambda p: figures.plot_confusion(run.result, p, figures.PAGE_CELL_INCHES),
                  tmp, "confusion.png")
    return _section("confusion", "Confusion matrix",
                    '<p class="note">Rows: true class, normalized (colour); counts in the '
                    "cells up to 30 classes.</p>"
                    f'<div class="fig">{_img(png, "image/png", "confusion matrix")}</div>')


def _misclassified(run: fit_run.FitRun, thumbs: fit_run.Thumbs) -> str:
    r = run.result
    wrong = figures.most_confident_failures(r, r.num_examples)
    top = top_k_indices(r.scores, 3)
    tiles = []
    for i in wrong[:MAX_MISCLASSIFIED]:
        name = r.file_names[i] if r.file_names else None
        lines = "<br>".join(
            f'<span class="{"ok" if c == r.labels[i] else "bad"}">{_name(r.class_names[c])} '
            f"{r.scores[i, c]:.2f}</span>" for c in top[i])
        tiles.append(f'<div class="tile">{_img(thumbs.jpegs.get(name), alt=name or "")}'
                     f"<b>true: {_name(r.class_names[r.labels[i]])}</b><br>{lines}"
                     f'<br><span class="note">{_name(name or "")}</span></div>')
    if not wrong:
        body = "<p>No test image was misclassified.</p>"
    else:
        more = (f" (the {MAX_MISCLASSIFIED} most confident shown)"
                if len(wrong) > MAX_MISCLASSIFIED else "")
        body = (f"<p>{len(wrong)} of {r.num_examples} test images{more}, most confident "
                "first; top-3 probabilities.</p>" f'<div class="grid">{"".join(tiles)}</div>')
    return _section("misclassified", "Misclassified test images", body)


def _calibration(run: fit_run.FitRun, tmp: str) -> str:
    curves = [("test", reliability(run.result.scores, run.result.labels))]
    probs = run.oof_probabilities()
    if probs is not None:
        scored = ~np.isnan(probs).any(axis=1)  # rows outside a CV sample have no score
        curves.append(("cross-validation (out of fold)",
                       reliability(probs[scored], run.train_rows()[0][scored])))
    png = _figure(lambda p: figures.plot_reliability(curves, p), tmp, "reliability.png")
    ece = ", ".join(f"{name} {100 * rel.ece:.1f}%" for name, rel in curves)
    return _section("calibration", "Calibration",
                    f"<p>Expected calibration error (10 bins, Guo et al. 2017): {ece}. A "
                    "well calibrated model's points lie on the diagonal.</p>"
                    + _img(png, "image/png", "reliability diagram"))


def _reject(run: fit_run.FitRun, tmp: str) -> str:
    title = "None of these: the reject option"
    chosen = run.reject
    probs = run.oof_probabilities()
    if chosen is None or probs is None:
        return _section("reject", title, "<p>No reject threshold in this run (a run from "
                        "before the reject option, or without out-of-fold scores); rerun "
                        "<code>illustration-tl fit</code> on this output to add it.</p>")
    cv = reject.risk_coverage(probs, run.train_rows()[0])
    test = reject.risk_coverage(run.result.scores, run.result.labels)
    coverage, accuracy = reject.at_threshold(run.result.scores, run.result.labels,
                                             chosen.threshold)
    png = _figure(lambda p: figures.plot_risk_coverage(
        [("cross-validation (out of fold)", cv), ("test", test)], p,
        (chosen.coverage, 1.0 - chosen.accuracy),
        f"threshold {chosen.threshold:.3f}"), tmp, "risk_coverage.png")
    test_words = (f"On the test split it answers {_pct(coverage)} of "
                  f"{run.result.num_examples} images, {_pct(accuracy)} of them right."
                  if accuracy is not None else
                  f"On the test split it answers none of {run.result.num_examples} images.")
    body = (f"<p>With <code>--reject</code> (<code>reject=True</code> in Python), "
            f"<code>predict</code> and <code>evaluate</code> {_e(chosen.words())}. "
            f"{test_words} Set the target with <code>fit --reject_precision</code>.</p>"
            '<p class="note">Each point of a curve is a threshold on the top probability: '
            "the share of images at or above it (coverage) and the top-1 error among "
            "them (risk); Geifman &amp; El-Yaniv 2017. The circle is the chosen threshold "
            "on the cross-validation folds it was chosen on.</p>"
            + _img(png, "image/png", "risk-coverage curve"))
    return _section("reject", title, body)


def _leaderboard(run: fit_run.FitRun) -> str:
    board = run.board
    folds = board.get("folds")
    rows = []
    for i, r in enumerate(board["results"][:LEADERBOARD_ROWS], start=1):
        chosen = " <b>(chosen)</b>" if r["config"] == run.chosen else ""
        rows.append([i, _e(r["label"]) + chosen, f"{r['folds']} of {folds}",
                     _pct(r["cv_top1"]), _pct(r.get("cv_top5")), r.get("seconds", "")])
    note = (f"<p>Search <code>{_e(board.get('mode'))}</code>: "
            f"{len(board['results'])} configurations in {board.get('seconds')} s. "
            "Cross-validation on the training splits (train + validation); the test split "
            "is never seen. Rows scored on fewer folds were dropped after the first fold "
            "(successive halving) and rank below every row scored on all folds, whatever "
            "their number. Full table: "
            '<a href="search/leaderboard.md">search/leaderboard.md</a>.</p>')
    return _section("leaderboard", "Search leaderboard (top 10)", note + _table(
        ["#", "configuration", "folds", "CV top-1", "CV top-5", "seconds"], rows))


def _label_issues(f: fit_run.Findings, thumbs: fit_run.Thumbs, names: list[str]) -> str:
    if f.issues is None:
        return _section("label-issues", "Possible label errors",
                        "<p>No out-of-fold scores in this run (search/oof_scores.npy).</p>")
    rows = f.issues.issues()
    tiles = []
    for i in rows[:MAX_LABEL_ISSUES]:
        name = f.train_names[i]
        tiles.append(f'<div class="tile">{_img(thumbs.jpegs.get(name), alt=name)}'
                     f'given: <span class="bad">{_name(names[f.train_labels[i]])}</span> '
                     f"{f.issues.self_confidence[i]:.2f}<br>suggested: "
                     f'<span class="ok">{_name(names[f.issues.suggested[i]])}</span> '
                     f"{f.issues.suggested_probability[i]:.2f}"
                     f'<br><span class="note">{_name(name)}</span></div>')
    body = (f"<p>{len(rows)} of {len(f.train_names)} training images are counted under "
            "another class than their label by confident learning (Northcutt et al. 2021) "
            "on the out-of-fold probabilities; most likely first (lowest probability of the "
            "given label). Each is a candidate to check, not a verdict. All of them: "
            f'<a href="{LABEL_ISSUES_CSV}">{LABEL_ISSUES_CSV}</a>.</p>'
            f'<div class="grid">{"".join(tiles)}</div>')
    return _section("label-issues", "Possible label errors", body)


def _duplicates(f: fit_run.Findings, thumbs: fit_run.Thumbs) -> str:
    im = f.images
    kinds = {k: sum(im.kind(p) == k for p in f.pairs)
             for k in ("leakage", "conflict", "within class")}
    exact = sum(p.exact for p in f.pairs)
    tiles = []
    for p in f.pairs[:MAX_DUPLICATE_PAIRS]:
        a, b = im.file_names[p.a], im.file_names[p.b]
        what = "exact" if p.exact else f"cosine {p.similarity:.3f}"
        tiles.append(f'<div class="tile"><div class="pair">'
                     f"{_img(thumbs.jpegs.get(a), alt=a)}{_img(thumbs.jpegs.get(b), alt=b)}"
                     f"</div><b>{_name(im.kind(p))}</b> ({what})<br>"
                     f"{_name(im.class_names[im.labels[p.a]])} / {_name(im.splits[p.a])}: "
                     f'<span class="note">{_name(a)}</span><br>'
                     f"{_name(im.class_names[im.labels[p.b]])} / {_name(im.splits[p.b])}: "
                     f'<span class="note">{_name(b)}</span></div>')
    rule = (f"feature cosine ≥ {f.threshold:g}" if f.threshold <= 1 else
            "pixel-identical only (random weights: their features make every drawing "
            "alike, so near duplicates are not looked for)")
    body = (f"<p>{len(f.pairs)} pairs ({exact} pixel-identical), {rule}: "
            f"{kinds['leakage']} between training and test (leakage), "
            f"{kinds['conflict']} across classes (conflicting labels), "
            f"{kinds['within class']} within a class. Look-alike drawings of one series "
            "(cards, flags, icon sets) pass the threshold too: each pair is a candidate to "
            f'look at. All of them: <a href="{DUPLICATES_CSV}">{DUPLICATES_CSV}</a>.</p>')
    if tiles:
        body += f'<div class="grid">{"".join(tiles)}</div>'
    return _section("duplicates", "Duplicates", body)


# --- The page ------------------------------------------------------------------------

def render(run: fit_run.FitRun, found: fit_run.Findings, thumbs: fit_run.Thumbs) -> str:
    """The whole page as text."""
    leaks = duplicates.count_leakage(found.pairs, found.images)
    leaked = len(duplicates.leaked_test_images(found.pairs, found.images))
    with tempfile.TemporaryDirectory() as tmp:
        parts = [_summary(run, leaks, leaked), _per_class(run), _confusion(run, tmp),
                 _misclassified(run, thumbs), _calibration(run, tmp), _reject(run, tmp),
                 _leaderboard(run),
                 _label_issues(found, thumbs, run.store.class_names),
                 _duplicates(found, thumbs)]
    nav = " · ".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in SECTIONS)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>fit report: {_e(run.result.model_name)}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>fit report: {_e(run.result.model_name)}</h1><p>{nav}</p>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_fit_report(run_dir: str, *, threshold: float = duplicates.NEAR_THRESHOLD,
                     log: Callable[[str], None] | None = None) -> str:
    """Writes ``report.html``, ``label_issues.csv`` and ``duplicates.csv`` into a finished
    ``fit`` run folder; returns the page's path. Logs one warning line when test images
    have duplicates in the training splits."""
    log = log or (lambda _: None)
    run = fit_run.load(run_dir)
    splits = [s for s in (*fit_run.TRAIN_SPLITS, fit_run.TEST_SPLIT) if s in run.store.labels]
    n = sum(len(run.store.labels[s]) for s in splits)
    log(f"report: decoding {n:,} images for their thumbnails and pixel hashes")
    thumbs = fit_run.read_thumbs(run_dir, splits)
    log(f"report: label issues and near duplicates ({n:,} x {n:,} feature cosines)")
    found = fit_run.findings(run, thumbs.hashes, threshold)
    page = render(run, found, thumbs)
    path = os.path.join(run_dir, REPORT_HTML)
    files.atomic_write(path, page)
    names = run.store.class_names
    files.atomic_write(os.path.join(run_dir, LABEL_ISSUES_CSV), label_issues.to_csv(
        found.issues, found.train_names, found.train_splits, found.train_labels, names)
        if found.issues is not None else ",".join(label_issues.CSV_FIELDS) + "\n")
    files.atomic_write(os.path.join(run_dir, DUPLICATES_CSV),
                       duplicates.to_csv(found.pairs, found.images))
    leaks = duplicates.count_leakage(found.pairs, found.images)
    if leaks:
        leaked = len(duplicates.leaked_test_images(found.pairs, found.images))
        log(leak_warning(leaked, len(run.store.labels.get(fit_run.TEST_SPLIT, ())), leaks))
    log(f"report: {path}")
    return path


def leak_warning(leaked: int, tests: int, pairs: int) -> str:
    """The one-line warning on test images with a near duplicate in training. Past
    :data:`LOOKALIKE_SHARE` of the test split the threshold is joining look-alikes, not
    copies (at 100k Iconify icons it flagged 19,263 of 19,766 test images: one set's
    64 px glyphs are alike to the middle VGG16 layer), and ``--dedupe`` would move most
    of the folder: the line says so instead of advising it."""
    found = f"{leaked} of {tests} test images have a near duplicate in training " \
            f"({pairs} pairs, {DUPLICATES_CSV})"
    if leaked > LOOKALIKE_SHARE * tests:
        return (f"warning: {found}: so many that in this folder the threshold also joins "
                "distinct look-alike images (one icon set's glyphs, a card series); look at "
                "the pairs before --dedupe, which would move most of them")
    return (f"warning: {found}: the test score is inflated; rerun with --dedupe to put each "
            "group on one side")
