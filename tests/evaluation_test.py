"""Tests of top-k scoring and the common evaluation result (paper §7, Tables 2-4)."""

import numpy as np
import pytest

from illustration_tl.datasets import imagenet
from illustration_tl.errors import UserError
from illustration_tl.evaluation import metrics as evaluation
from illustration_tl.evaluation.metrics import EvalResult

# Four examples, four classes; the true class ranks 1st, 2nd, 3rd, 4th.
SCORES = np.array([[0.9, 0.1, 0.0, 0.0],
                   [0.5, 0.3, 0.1, 0.1],
                   [0.2, 0.3, 0.4, 0.1],
                   [0.4, 0.3, 0.2, 0.1]])
LABELS = np.array([0, 1, 0, 3])


def test_top_k_from_hand_made_scores():
    assert evaluation.true_class_rank(SCORES, LABELS).tolist() == [0, 1, 2, 3]
    assert evaluation.top_k_accuracy(SCORES, LABELS, 1) == 0.25
    assert evaluation.top_k_accuracy(SCORES, LABELS, 2) == 0.5
    assert evaluation.top_k_accuracy(SCORES, LABELS, 3) == 0.75
    assert evaluation.top_k_accuracy(SCORES, LABELS, 4) == 1.0
    # Negative decision scores (SVM margins) work the same way.
    assert evaluation.top_k_accuracy(SCORES - 5.0, LABELS, 2) == 0.5


def test_ties_count_against_the_true_class():
    flat = np.zeros((3, 5))
    assert evaluation.top_k_accuracy(flat, np.array([0, 2, 4]), 1) == 0.0
    assert evaluation.top_k_accuracy(flat, np.array([0, 2, 4]), 5) == 1.0
    tie = np.array([[1.0, 1.0, 0.0]])
    assert evaluation.top_k_accuracy(tie, np.array([0]), 1) == 0.0
    assert evaluation.top_k_accuracy(tie, np.array([0]), 2) == 1.0


def test_binary_decision_scores_become_two_columns():
    s = evaluation.scores_2d(np.array([-2.0, 3.0]))
    assert s.tolist() == [[2.0, -2.0], [-3.0, 3.0]]
    assert evaluation.top_k_accuracy(s, np.array([0, 1]), 1) == 1.0


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        evaluation.top_k_accuracy(SCORES, np.array([0, 1, 2, 4]), 1)
    with pytest.raises(ValueError):
        EvalResult("m", ["a", "b"], LABELS, SCORES)


def test_per_class_and_confusion():
    r = EvalResult("m", ["a", "b", "c", "d"], LABELS, SCORES, ["w", "x", "y", "z"])
    rows = {row["class"]: row for row in r.per_class(ks=(1, 2))}
    assert set(rows) == {"a", "b", "d"}  # "c" has no test example
    assert rows["a"]["n"] == 2 and rows["a"]["top1"] == 0.5 and rows["a"]["top2"] == 0.5
    assert rows["b"]["top1"] == 0.0 and rows["b"]["top2"] == 1.0
    assert rows["d"]["top1"] == 0.0
    names, m = r.confusion()
    assert names == ["a", "b", "d"]
    # Predictions: a, a, c, a. "c" is not a true class here, so it lands in "other".
    assert m.tolist() == [[1, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0]]


def test_save_and_load_round_trip(tmp_path):
    r = EvalResult("svm", ["a", "b", "c", "d"], LABELS, SCORES, ["w", "x", "y", "z"],
                   {"note": "x", "value": np.float32(1.5)})
    r.save(str(tmp_path / "res"))
    back = EvalResult.load(str(tmp_path / "res"))
    assert back.model_name == "svm" and back.class_names == r.class_names
    np.testing.assert_array_equal(back.labels, r.labels)
    np.testing.assert_allclose(back.scores, r.scores, rtol=1e-6)
    assert back.file_names == r.file_names and back.extra == {"note": "x", "value": 1.5}
    assert back.top_k(2) == 0.5
    assert not list(tmp_path.joinpath("res").glob(".tmp-*"))


def test_load_of_a_wrong_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="eval.json"):
        EvalResult.load(str(tmp_path))


def test_imagenet_baseline_1000_way_and_restricted():
    rng = np.random.default_rng(0)
    names = ["ambulance", "harp", "not-imagenet", "banana"]
    idx = [imagenet.find("ambulance").index, imagenet.find("harp").index, -1,
           imagenet.find("banana").index]
    labels = np.array([0, 1, 2, 3, 0, 1])
    scores = rng.random((6, 1000)) * 0.1
    scores[0, idx[0]] = 5.0          # ambulance: right at top-1
    scores[1, 7] = 5.0               # harp: beaten by an unrelated class ...
    scores[1, idx[1]] = 4.0          # ... but second overall, first among the dataset's
    scores[3, idx[0]] = 5.0          # banana predicted as ambulance
    scores[4, 7] = 9.0
    scores[4, 8:14] = 8.0
    scores[4, idx[3]] = 7.0          # ambulance example: banana beats ambulance
    scores[5, idx[1]] = 3.0          # harp: right
    full, restricted = evaluation.imagenet_baseline("vgg", scores, labels, names, idx,
                                                    [f"f{i}" for i in range(6)])
    assert full.num_examples == 5 and full.extra["skipped_examples"] == 1
    assert len(full.class_names) == 1000 and full.class_names[idx[1]] == "harp"
    assert full.top_k(1) == pytest.approx(2 / 5)
    assert full.top_k(5) == pytest.approx(3 / 5)
    assert restricted.class_names == ["ambulance", "harp", "banana"]
    assert restricted.scores.shape == (5, 3)
    assert restricted.top_k(1) == pytest.approx(3 / 5)
    assert "f2" not in restricted.file_names
    assert {r["class"] for r in full.per_class()} == {"ambulance", "harp", "banana"}


def test_imagenet_baseline_needs_1000_scores_and_imagenet_classes():
    with pytest.raises(UserError, match="1000-way"):
        evaluation.imagenet_baseline("m", np.zeros((2, 10)), [0, 1], ["a", "b"], [1, 2])
    with pytest.raises(UserError, match="ImageNet index"):
        evaluation.imagenet_baseline("m", np.zeros((2, 1000)), [0, 1], ["a", "b"], [-1, -1])
