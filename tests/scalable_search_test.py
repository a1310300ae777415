"""The search's memory budget, size rule and approximate (Nyström) heads (issue 21),
and class weights as a searched option (issue 22)."""

import dataclasses
import json
import os
import tracemalloc

import numpy as np
import pytest

from illustration_tl.features import multilayer as features
from illustration_tl.heads import budget, grids, head, search
from illustration_tl.heads.approximate import NystroemMap


def _store(n_per_class=8, classes=4, seed=0, modes=("squash", "pad"), dim=6,
           counts=None) -> features.FeatureStore:
    """Random features with a class signal (as tests/fit_test.py's), for the mechanics."""
    rng = np.random.default_rng(seed)
    blocks = [features.PAPER_BLOCK] + [features.block_name(n, p) for n in ("a", "b", "c")
                                       for p in features.POOLS]
    arrays, labels, names = {}, {}, {}
    train_counts = counts if counts is not None else [n_per_class] * classes
    for split, per in (("train", train_counts), ("validation", [2] * classes),
                       ("test", [3] * classes)):
        y = np.repeat(np.arange(classes), per)
        labels[split], names[split] = y, [f"{split}/{i}.png" for i in range(len(y))]
        arrays[split] = {}
        for mode in modes:
            for view in features.VIEWS:
                for b in blocks:
                    x = rng.random((len(y), dim)) + y[:, None] * 0.3
                    arrays[split][features.key(mode, view, b)] = x.astype(np.float32)
    return features.FeatureStore(arrays, labels, names, [f"c{i}" for i in range(classes)],
                                 blocks, list(modes), list(features.VIEWS),
                                 {"layers": ["a", "b", "c"], "backbone": "vgg16"})


def test_size_rule_switches_at_the_budget():
    rows = 2 * 1000
    need = budget.exact_bytes(rows)
    assert need == budget.FEATURE_SET_CACHE * (1 + budget.KERNEL_CACHE) * rows ** 2 * 8
    assert budget.choose(1000, 2, need, 100).exact
    r = budget.choose(1000, 2, need - 1, 100)
    assert not r.exact and r.components == 1000 and r.cv_images == 1000
    big = budget.choose(120_000, 2, 3 * 10 ** 9, 2944)
    assert not big.exact and big.components == budget.NYSTROEM_COMPONENTS
    assert budget.MIN_CV_IMAGES <= big.cv_images <= budget.MAX_CV_IMAGES
    # the sample's Nyström and feature rows fit the budget
    assert big.cv_images * 2 * budget.approx_row_bytes(big.components, 2944) <= big.budget_bytes
    assert "approximate: 240,000 rows" in big.describe()
    assert "CV on a stratified sample of" in big.describe()
    assert f"Nyström {budget.NYSTROEM_COMPONENTS:,} components" in big.describe()
    assert budget.max_exact_images(need, 2) == 1000
    assert budget.default_max_memory_bytes() > 0


def test_search_picks_the_regime_and_the_leaderboard_names_it():
    store = _store(n_per_class=10, modes=("squash",))
    exact = search.run(store, "fast", n_jobs=1, max_memory_bytes=10 ** 9)
    assert all(r.regime.exact for r in exact)
    assert {search.classifiers.get(r.config.classifier).family for r in exact} <= {
        "kernel", "linear"}
    md = search.leaderboard_markdown(exact, exact[0].config, "fast", 1.0)
    assert "Size rule: exact kernel SVMs: 96 rows fit the 1.0 GB budget" in md
    approx = search.run(store, "fast", n_jobs=1, max_memory_bytes=1000)
    assert all(not r.regime.exact for r in approx)
    families = {search.classifiers.get(r.config.classifier).family for r in approx}
    assert "nystroem" in families and "kernel" not in families
    d = approx[0].as_dict()
    assert d["regime"]["kind"] == "approximate" and d["regime"]["rule"].startswith(
        "approximate: 96 rows")
    md = search.leaderboard_markdown(approx, approx[0].config, "fast", 1.0)
    assert "Size rule: approximate: 96 rows" in md
    assert approx[0].oof.shape == (48, 4) and np.isfinite(approx[0].oof).all()
    assert approx[0].top1 > 0.5   # the class signal is found (4 classes: chance 0.25)


def test_approximate_cv_runs_on_a_stratified_sample_and_oof_marks_the_rest():
    store = _store(n_per_class=300, classes=3, modes=("squash",))
    y = np.concatenate([store.labels["train"], store.labels["validation"]])
    results = search.run(store, "fast", n_jobs=1, max_memory_bytes=1000)
    r = results[0]
    assert abs(r.regime.cv_images - budget.MIN_CV_IMAGES) <= 3   # rounded per class
    assert r.regime.cv_images < len(y) == r.regime.images
    scored = np.isfinite(r.oof).all(axis=1)
    assert scored.sum() == r.regime.cv_images
    assert np.allclose(np.bincount(y[scored]), np.bincount(y) * scored.mean(), atol=1)
    # the final head is refitted on every image; NaN rows are left out of calibration
    h = head.fit(store, r.config, ["train", "validation"], r.oof)
    assert np.isfinite(h.temperature) and h.temperature > 0
    assert h.nystroem is not None and h.nystroem.size == min(r.config.components, len(y))


def _search_peak(n_per_class: int) -> int:
    store = _store(n_per_class=n_per_class, classes=4, modes=("squash",), dim=16)
    tracemalloc.start()
    search.run(store, "fast", n_jobs=1, max_memory_bytes=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_approximate_search_memory_does_not_grow_quadratically():
    small, large = _search_peak(500), _search_peak(2000)   # 2k vs 8k training images
    # exact kernel matrices would grow 16x; the approximate search holds a fixed-size
    # sample plus linear copies of the features
    assert large / small < 6, (small, large)


def test_nystroem_head_numpy_equals_tensorflow_and_round_trips(tmp_path):
    import tensorflow as tf

    store = _store(n_per_class=12, modes=("squash",))
    cfg = search.Config(resize="squash", blocks=("b:avg", "b:max", "c:avg", "c:max"),
                        flip_train=True, flip_test=True, norm="l2",
                        classifier="nystroem_svm", C=10.0, gamma="2*scale", components=20)
    h = head.fit(store, cfg, ["train", "validation"], None)
    assert h.nystroem.size == 20 and h.weights.shape == (20, 4)
    orig = head.store_blocks(store, ["test"], "squash", "orig", cfg.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", cfg.blocks)
    p_np = h.probabilities(orig, flip)
    module = h.tf_variables()
    p_tf = h.tf_probabilities({k: tf.constant(v) for k, v in orig.items()},
                              {k: tf.constant(v) for k, v in flip.items()}, module).numpy()
    np.testing.assert_allclose(p_tf, p_np, atol=1e-6)
    s_np = h.raw_scores(h.row_features(orig))
    s_tf = h._tf_scores({k: tf.constant(v) for k, v in orig.items()}, module).numpy()
    np.testing.assert_allclose(s_tf, s_np, atol=1e-6)
    h.save(str(tmp_path))
    back = head.Head.load(str(tmp_path))
    assert back.config == cfg and back.nystroem.gamma == h.nystroem.gamma
    np.testing.assert_allclose(back.probabilities(orig, flip), p_np, atol=1e-12)
    assert (back.probabilities(orig, flip).argmax(1) == store.labels["test"]).mean() > 0.5


def test_nystroem_map_approximates_the_rbf_kernel():
    from sklearn.metrics.pairwise import rbf_kernel

    x = np.random.default_rng(0).random((60, 5))
    y = np.arange(60) % 3
    ny = NystroemMap.fit(x, y, 0.7, 60)   # every row a component: exact on them
    z = ny.transform(x)
    np.testing.assert_allclose(z @ z.T, rbf_kernel(x, gamma=0.7), atol=1e-6)


def test_old_head_and_leaderboard_without_new_fields_still_load(tmp_path):
    store = _store(n_per_class=6, modes=("squash",))
    cfg = search.Config(resize="squash", blocks=("c:avg", "c:max"), norm="l2",
                        classifier="logreg", C=30.0)
    head.fit(store, cfg, ["train", "validation"], None).save(str(tmp_path))
    path = os.path.join(tmp_path, head.JSON)
    with open(path) as f:
        doc = json.load(f)
    for k in ("class_weight", "components"):   # as written before these fields existed
        del doc["config"][k]
    with open(path, "w") as f:
        json.dump(doc, f)
    back = head.Head.load(str(tmp_path))
    assert back.config == cfg and back.config.class_weight is None and back.nystroem is None
    old_board = {"mode": "fast", "chosen": {"label": cfg.label(), "config": {
        k: v for k, v in cfg.as_dict().items() if k not in ("class_weight", "components")},
        "cv_top1": 0.5, "cv_top5": None, "folds": 3, "seconds": 1.0}}
    assert search.Config.from_dict(old_board["chosen"]["config"]) == cfg


def test_class_weights_are_searched_in_thorough_and_in_fast_when_imbalanced():
    balanced = _store(modes=("squash",))
    assert not grids.imbalanced(balanced)
    assert not any(c.class_weight for c in search.candidates("fast", balanced))
    thorough = search.candidates("thorough", balanced)
    kinds = {c.classifier for c in thorough if c.class_weight == "balanced"}
    assert kinds == {"svm", "logreg", "ridge"}
    skewed = _store(modes=("squash",), counts=[30, 8, 8, 3])   # + 2 validation each
    assert grids.imbalanced(skewed)
    fast = search.candidates("fast", skewed)
    weighted = [c for c in fast if c.class_weight == "balanced"]
    assert weighted and not any(grids.is_fast_probe(c) for c in weighted)
    assert "class_weight=balanced" in weighted[0].label()
    results = search.run(skewed, "fast", n_jobs=1, configs=weighted[:2] + [
        dataclasses.replace(weighted[0], class_weight=None)])
    assert len(results) == 3 and all(len(r.fold_top1) == 3 for r in results)
    with pytest.raises(search.UserError, match="class_weight"):
        search.Config(class_weight="auto")


def test_paper_mode_refuses_a_folder_over_the_budget():
    with pytest.raises(search.UserError, match="--search=paper .* over the .* budget"):
        search.run(_store(modes=("squash",)), "paper", n_jobs=1, max_memory_bytes=1000)


def test_the_approximate_regime_never_computes_a_gram_matrix(monkeypatch):
    def no_gram(self):
        raise AssertionError("a rows x rows Gram matrix in the approximate regime")

    monkeypatch.setattr(search.FeatureSet, "dot", no_gram)
    results = search.run(_store(n_per_class=10, modes=("squash",)), "fast", n_jobs=1,
                         max_memory_bytes=1000)
    assert results and not results[0].regime.exact
