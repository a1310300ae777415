"""``fit --dedupe``: groups of duplicates that span training and test end on one side."""

from __future__ import annotations

import numpy as np

from illustration_tl.evaluation import duplicates
from illustration_tl.features import store


def _images(splits):
    return duplicates.Images([f"{i}.png" for i in range(len(splits))], list(splits),
                             np.zeros(len(splits), np.int64), ["a"])


def test_each_group_spanning_train_and_test_goes_to_its_majority_side():
    splits = ["train", "train", "test", "validation", "test", "train", "test", "test"]
    pairs = [duplicates.Pair(0, 1, 0.95, False), duplicates.Pair(1, 2, 0.93, False),  # 2 vs 1
             duplicates.Pair(3, 4, 1.0, True),                                       # tie
             duplicates.Pair(6, 7, 0.99, False)]                                     # test only
    out = duplicates.grouped_splits(pairs, _images(splits))
    assert out == ["train", "train", "train", "test", "test", "train", "test", "test"]
    leaked = [p for p in pairs if _images(out).is_leakage(p)]
    assert leaked == []


def test_a_regrouped_store_moves_rows_and_keeps_their_features():
    rng = np.random.default_rng(0)
    arrays = {s: {"m/orig/b": rng.random((n, 2))} for s, n in (("train", 3), ("test", 2))}
    s = store.FeatureStore(arrays, {"train": np.array([0, 1, 0]), "test": np.array([1, 1])},
                           {"train": ["a", "b", "c"], "test": ["d", "e"]}, ["x", "y"],
                           ["b"], ["m"], ["orig"], {})
    r = s.regrouped(["train", "test"], ["train", "test", "train", "train", "test"])
    assert r.file_names == {"train": ["a", "c", "d"], "test": ["b", "e"]}
    np.testing.assert_array_equal(r.labels["test"], [1, 1])
    np.testing.assert_array_equal(r.block("train", "m", "orig", "b")[2],
                                  arrays["test"]["m/orig/b"][0])
