"""The reject option (issue 22, "None of these"): the threshold rule and the AUROC on
hand-checkable numbers, then one tiny real ``fit`` run: the threshold in the model's
metadata, ``predict --reject``, ``evaluate --reject`` and ``predict(reject=True)``
answering ``unknown`` exactly below it, the missing-threshold error, and a changed
``--reject_precision`` redoing only what depends on it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fit_helpers import ROOT, tiny_fit_run

from illustration_tl.errors import UserError
from illustration_tl.evaluation import fit_run, label_issues, reject

PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")


def _probs(confidences, correct, labels=None):
    """Rows of 3-class probabilities with top probability ``confidences[i]``, on the
    label (class 0) when ``correct[i]``, else on class 1."""
    rows = []
    for c, ok in zip(confidences, correct):
        rest = (1.0 - c) / 2
        rows.append([c, rest, rest] if ok else [rest, c, rest])
    return np.array(rows), np.zeros(len(rows), np.int64) if labels is None else labels


# confidence: 0.95 0.9 0.9 0.8 0.7 0.6 0.5 0.4
# right:      yes  yes yes no  yes yes no  yes
# accepted at t: 1/1, 3/3, 3/4, 4/5, 5/6, 5/7, 6/8 right
CONF = [0.95, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
RIGHT = [True, True, True, False, True, True, False, True]


def test_risk_coverage_by_hand():
    p, y = _probs(CONF, RIGHT)
    curve = reject.risk_coverage(p, y)
    assert curve.thresholds.tolist() == [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # ties: one point
    assert curve.coverage.tolist() == pytest.approx([1 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1])
    assert curve.accuracy.tolist() == pytest.approx([1, 1, 3 / 4, 4 / 5, 5 / 6, 5 / 7, 6 / 8])
    assert curve.risk[-1] == pytest.approx(0.25) and curve.num_rows == 8


@pytest.mark.parametrize("target, threshold, coverage, accuracy", [
    (0.95, 0.9, 3 / 8, 1.0),    # the two rows at 0.9 come in together
    (0.8, 0.6, 6 / 8, 5 / 6),   # the largest coverage at >= 80%, not the first one
    (0.75, 0.4, 1.0, 0.75),     # exactly at the target counts
    (0.5, 0.4, 1.0, 0.75),
])
def test_threshold_is_the_largest_coverage_at_the_target(target, threshold, coverage,
                                                          accuracy):
    p, y = _probs(CONF, RIGHT)
    t = reject.choose_threshold(p, y, target)
    assert (t.threshold, t.coverage, t.accuracy, t.reached, t.num_rows) == pytest.approx(
        (threshold, coverage, accuracy, True, 8))
    assert t.accepts(p).sum() == round(coverage * 8)


def test_threshold_does_not_split_a_tie():
    # 0.9 right, then 0.8 right and 0.8 wrong: 2/3 at 0.8, so 90% stops at 0.9
    p, y = _probs([0.9, 0.8, 0.8], [True, True, False])
    t = reject.choose_threshold(p, y, 0.9)
    assert (t.threshold, t.coverage, t.accuracy) == pytest.approx((0.9, 1 / 3, 1.0))


def test_fallback_when_no_threshold_reaches_the_target():
    # accuracies 0/1, 1/2, 2/3, 2/4: 90% is never reached -> the most accurate point
    p, y = _probs([0.9, 0.8, 0.7, 0.6], [False, True, True, False])
    t = reject.choose_threshold(p, y, 0.9)
    assert not t.reached and "fallback" in t.words()
    assert (t.threshold, t.coverage, t.accuracy) == pytest.approx((0.7, 3 / 4, 2 / 3))


def test_nan_rows_are_ignored_and_bad_targets_refused():
    p, y = _probs(CONF, RIGHT)
    p = np.vstack([p, np.full((2, 3), np.nan)])
    y = np.r_[y, 0, 0]
    assert reject.choose_threshold(p, y, 0.95).num_rows == 8
    assert reject.accepted(p, 0.0).tolist() == [True] * 8 + [False] * 2
    with pytest.raises(ValueError, match="target precision"):
        reject.choose_threshold(p, y, 1.5)
    with pytest.raises(ValueError, match="no scored rows"):
        reject.choose_threshold(np.full((2, 3), np.nan), np.zeros(2, int), 0.9)


def test_threshold_round_trips_and_refuses_malformed_metadata():
    p, y = _probs(CONF, RIGHT)
    t = reject.choose_threshold(p, y, 0.8)
    assert reject.RejectThreshold.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    for bad in (None, [], {**t.to_dict(), "threshold": "0.5"},
                {**t.to_dict(), "threshold": float("nan")}, {**t.to_dict(), "target": 2.0},
                {**t.to_dict(), "reached": 1}, {k: v for k, v in t.to_dict().items()
                                                if k != "coverage"}):
        with pytest.raises(ValueError):
            reject.RejectThreshold.from_dict(bad)


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 6, rng.integers(1, 30)) / 5.0   # few values: many ties
        b = rng.integers(0, 5, rng.integers(1, 30)) / 5.0
        truth = np.r_[np.ones(len(a)), np.zeros(len(b))]
        assert reject.auroc(a, b) == pytest.approx(roc_auc_score(truth, np.r_[a, b]),
                                                   abs=1e-12)
    assert reject.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert reject.auroc([0.5, 0.5], [0.5]) == 0.5
    assert reject.auroc([0.1, np.nan], [0.2]) == 0.0
    with pytest.raises(ValueError):
        reject.auroc([], [0.3])


def test_at_threshold_on_other_rows():
    p, y = _probs(CONF, RIGHT)
    assert reject.at_threshold(p, y, 0.7) == pytest.approx((5 / 8, 4 / 5))
    assert reject.at_threshold(p, y, 0.99) == (0.0, None)


# --- One tiny real fit run -------------------------------------------------------------

def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "illustration_tl.cli", *args], env=env,
                          capture_output=True, text=True, timeout=900, cwd=cwd)


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reject")
    images, out = tiny_fit_run(root)
    return root, images, out


def test_fit_stores_the_threshold_chosen_on_the_folds(run):
    _, _, out = run
    meta = json.loads((out / "model" / "illustration_tl.json").read_text())
    stored = reject.RejectThreshold.from_dict(meta["reject"])
    assert json.loads((out / "reject" / "reject.json").read_text()) == meta["reject"]
    assert json.loads((out / "fit.json").read_text())["reject"] == meta["reject"]
    # recomputed from the run's out-of-fold scores and calibrated softmax
    r = fit_run.load(str(out))
    probs = label_issues.softmax(r.oof, json.loads((out / "final" / "head.json").read_text())
                                 ["temperature"])
    again = reject.choose_threshold(probs, r.train_rows()[0], 0.95)
    assert stored == again and r.reject == stored and stored.target == 0.95
    assert stored.num_rows == len(r.train_rows()[0])
    page = (out / "report.html").read_text()
    section = page[page.index('<section id="reject">'):]
    assert f"{stored.threshold:.3f}" in section and 'alt="risk-coverage curve"' in section
    assert f"{stored.threshold:.3f}" in (out / "report.md").read_text()


def test_predict_reject_answers_unknown_exactly_below_the_threshold(run):
    root, images, out = run
    plain = _cli("predict", f"--model={out}", f"--images={images}", "--format=json", cwd=root)
    asked = _cli("predict", f"--model={out}", f"--images={images}", "--format=json",
                 "--reject", cwd=root)
    assert plain.returncode == 0 and asked.returncode == 0, asked.stderr[-2000:]
    before, after = _json_lines(plain.stdout), _json_lines(asked.stdout)
    threshold = json.loads((out / "reject" / "reject.json").read_text())["threshold"]
    assert len(before) == len(after) == 72
    assert all("answer" not in p for p in before)   # unchanged without --reject
    for p, q in zip(before, after):
        assert {k: v for k, v in q.items() if k != "answer"} == p
        assert q["answer"] == ("unknown" if p["scores"][0] < threshold else p["classes"][0])
    unknown = sum(q["answer"] == "unknown" for q in after)
    assert 0 < unknown < len(after), "the tiny run's threshold should split its images"
    table = _cli("predict", f"--model={out}", f"--images={images / 'bird'}", "--reject",
                 cwd=root)
    heads = [line for line in table.stdout.splitlines() if not line.startswith(" ")]
    assert [h.rpartition(": ")[2] for h in heads] == \
        [q["answer"] for q in after if "/bird/" in q["path"]]


def test_api_reject_matches_the_command_line(run):
    import illustration_tl

    root, images, out = run
    paths = sorted(str(p) for p in (images / "house").iterdir()) + [
        os.path.join(PHOTOS, "astronaut.jpg"), b"not an image"]
    clf = illustration_tl.load(str(out), verbose=0)
    plain = clf.predict(paths)
    asked = clf.predict(paths, reject=True)
    t = clf.reject_threshold()
    assert asked.threshold == t and plain.threshold is None
    np.testing.assert_array_equal(plain.probabilities, asked.probabilities)
    assert not plain.rejected.any() and asked.names[-1] is None   # skipped stays skipped
    for name, top, probs, rejected in zip(asked.names[:-1], plain.names[:-1],
                                          asked.probabilities[:-1], asked.rejected[:-1]):
        assert rejected == (probs.max() < t)
        assert name == ("unknown" if rejected else top)
    cli = _json_lines(_cli("predict", f"--model={out}", f"--images={images / 'house'}",
                           "--format=json", "--reject", cwd=root).stdout)
    assert [q["answer"] for q in cli] == asked.names[:len(cli)]


def test_evaluate_reject_reports_coverage_and_accuracy(run, tmp_path):
    from illustration_tl.serving import grouped_evaluation

    _, images, out = run
    plain = grouped_evaluation.evaluate(model=str(out), output=str(tmp_path / "plain"),
                                        images=str(images))
    doc = grouped_evaluation.evaluate(model=str(out), output=str(tmp_path / "asked"),
                                      images=str(images), reject=True)
    assert "reject" not in plain and doc["overall"] == plain["overall"]
    with open(tmp_path / "plain" / "predictions.csv", newline="") as f:
        assert "answer" not in next(csv.reader(f))
    with open(tmp_path / "asked" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    threshold = json.loads((out / "reject" / "reject.json").read_text())["threshold"]
    for row in rows:
        assert row["answer"] == ("unknown" if float(row["top1_score"]) < threshold
                                 else row["top1"])
    answered = [r for r in rows if r["answer"] != "unknown"]
    r = doc["reject"]
    assert (r["scored"], r["accepted"], r["threshold"]) == (72, len(answered), threshold)
    assert r["coverage"] == pytest.approx(len(answered) / 72)
    assert r["accuracy"] == pytest.approx(np.mean([a["answer"] == a["label"]
                                                   for a in answered]))
    assert "reject (`unknown` below" in (tmp_path / "asked" / "evaluation.md").read_text()


def test_a_model_without_a_threshold_is_refused_with_the_fix(run, tmp_path):
    import illustration_tl

    root, images, out = run
    old = tmp_path / "old_model"
    shutil.copytree(out / "model", old)
    meta = json.loads((old / "illustration_tl.json").read_text())
    del meta["reject"]   # a fit model from before the reject option
    (old / "illustration_tl.json").write_text(json.dumps(meta))
    r = _cli("predict", f"--model={old}", f"--images={images / 'bird'}", "--reject", cwd=root)
    assert r.returncode == 2 and r.stdout == ""
    line = r.stderr.strip().splitlines()[-1]
    assert "has no reject threshold" in line and str(old) in line and "rerun" in line
    clf = illustration_tl.load(str(old), verbose=0)
    with pytest.raises(UserError, match="reject=True: the model .* has no reject threshold"):
        clf.predict([str(images / "bird" / os.listdir(images / "bird")[0])], reject=True)


def test_a_changed_reject_precision_redoes_only_the_threshold_and_the_model(run, tmp_path):
    root, images, out = run
    again = tmp_path / "run"
    shutil.copytree(out, again)
    r = _cli("fit", f"--images={images}", f"--output={again}", "--weights=none",
             "--image_size=32", "--num_workers=1", "--resize_modes=squash",
             "--reject_precision=0.5", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    ran = {line.split("]")[0][1:] for line in r.stderr.splitlines()
           if line.endswith("] running")}
    assert ran == {"reject", "model"}
    meta = json.loads((again / "model" / "illustration_tl.json").read_text())
    assert meta["reject"]["target"] == 0.5
    assert meta["reject"]["coverage"] >= json.loads(
        (out / "reject" / "reject.json").read_text())["coverage"]
