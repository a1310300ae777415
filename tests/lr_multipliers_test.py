"""Tests of per-variable learning-rate multipliers (paper §7) on the optimizer's update."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from illustration_tl.errors import UserError
from illustration_tl.training import lr_multipliers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def two_variables(value=0.0, shape=(3, 2)):
    init = np.full(shape, value, dtype="float32")
    return keras.Variable(init, name="a"), keras.Variable(init.copy(), name="b")


def run_steps(optimizer, variables, grads):
    """Applies each gradient list in turn; returns the per-step deltas of every variable."""
    deltas = []
    for step_grads in grads:
        before = [v.numpy().copy() for v in variables]
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
        deltas.append([v.numpy() - b for v, b in zip(variables, before)])
    return deltas


def test_parse_rules():
    rules = lr_multipliers.parse_rules("11-16=0.01; block5_*,fc*=0.5 ;")
    assert rules == [lr_multipliers.Rule("11-16", 0.01), lr_multipliers.Rule("block5_*,fc*", 0.5)]
    assert lr_multipliers.format_rules(rules) == "11-16=0.01;block5_*,fc*=0.5"
    assert lr_multipliers.parse_rules(["1-2=3"]) == [lr_multipliers.Rule("1-2", 3.0)]
    assert lr_multipliers.parse_rules("") == []
    for bad, message in [("11-16", "not SPEC=MULTIPLIER"), ("=2", "not SPEC=MULTIPLIER"),
                         ("1-2=x", "not a number"), ("1-2=-1", "must be >= 0")]:
        with pytest.raises(UserError, match=message):
            lr_multipliers.parse_rules(bad)


def test_resolve_last_rule_wins_and_covers_every_variable():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="block1_conv1")(inputs)
    x = keras.layers.Dense(3, name="block2_conv1")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))
    rules = lr_multipliers.parse_rules("1-2=0.1;block2_*=0.5")
    resolved = lr_multipliers.resolve(model, rules)
    assert resolved == {"block1_conv1/kernel": 0.1, "block1_conv1/bias": 0.1,
                        "block2_conv1/kernel": 0.5, "block2_conv1/bias": 0.5,
                        "predictions/kernel": 1.0, "predictions/bias": 1.0}
    assert lr_multipliers.groups(resolved) == {
        1.0: ["predictions/kernel", "predictions/bias"],
        0.5: ["block2_conv1/kernel", "block2_conv1/bias"],
        0.1: ["block1_conv1/kernel", "block1_conv1/bias"]}
    assert lr_multipliers.group_name(0.01) == "x0.01"
    with pytest.raises(UserError, match="--lr_multipliers"):
        lr_multipliers.resolve(model, lr_multipliers.parse_rules("fc*=2"))


@pytest.mark.parametrize("m1, m2", [(1.0, 0.01), (0.3, 2.0)])
def test_sgd_step_ratio_equals_multiplier_ratio(m1, m2):
    a, b = two_variables()
    opt = lr_multipliers.create("sgd", 0.1, {"a": m1, "b": m2})
    g = np.linspace(-1, 1, 6, dtype="float32").reshape(3, 2)
    [(da, db)] = run_steps(opt, [a, b], [[g, g]])
    np.testing.assert_allclose(da, -0.1 * m1 * g, rtol=1e-6)
    np.testing.assert_allclose(db * m1, da * m2, rtol=1e-6)


def test_momentum_and_l2_follow_the_multiplier_over_steps():
    a, b = two_variables(0.5)
    opt = lr_multipliers.create("sgd", 0.05, {"a": 1.0, "b": 0.1}, momentum=0.9,
                                weight_decay=5e-4)
    rng = np.random.default_rng(0)
    grads = [[g, g] for g in rng.normal(size=(5, 3, 2)).astype("float32")]
    deltas = run_steps(opt, [a, b], grads)
    # Reference: Caffe's rule v = 0.9 v - lr_i (g + wd w); w += v, per variable.
    w = {"a": np.full((3, 2), 0.5), "b": np.full((3, 2), 0.5)}
    v = {"a": 0.0, "b": 0.0}
    for (da, db), (g, _) in zip(deltas, grads):
        for name, m, got in (("a", 1.0, da), ("b", 0.1, db)):
            v[name] = 0.9 * v[name] - 0.05 * m * (g + 5e-4 * w[name])
            w[name] = w[name] + v[name]
            np.testing.assert_allclose(got, v[name], rtol=1e-4, atol=1e-8)
    # Without decay, equal gradients give steps in the 1:0.1 ratio at every step.
    a, b = two_variables()
    opt = lr_multipliers.create("sgd", 0.05, {"a": 1.0, "b": 0.1}, momentum=0.9)
    for da, db in run_steps(opt, [a, b], grads):
        np.testing.assert_allclose(db * 10, da, rtol=1e-5, atol=1e-7)


def test_adam_multiplier_scales_the_step_where_gradient_scaling_does_not():
    a, b = two_variables()
    opt = lr_multipliers.create("adam", 1e-3, {"a": 1.0, "b": 0.1})
    g = np.linspace(0.5, 2.0, 6, dtype="float32").reshape(3, 2)
    deltas = run_steps(opt, [a, b], [[g, g]] * 3)
    for da, db in deltas:
        np.testing.assert_allclose(db * 10, da, rtol=1e-4)
    # Scaling the gradient instead barely changes Adam's step: not equivalent.
    c, d = two_variables()
    plain = keras.optimizers.Adam(1e-3)
    [(dc, dd)] = run_steps(plain, [c, d], [[g, 0.1 * g]])
    np.testing.assert_allclose(dd, dc, rtol=1e-3)


def test_zero_multiplier_freezes_and_decay_options():
    a, b = two_variables()
    opt = lr_multipliers.create("sgd", 0.1, {"a": 0.0, "b": 1.0}, momentum=0.9)
    g = np.ones((3, 2), "float32")
    [(da, db)] = run_steps(opt, [a, b], [[g, g]])
    assert not np.any(da) and np.all(db < 0)
    # Decoupled decay with a zero gradient: w *= 1 - lr * m * wd.
    a, b = two_variables(value=2.0)
    opt = lr_multipliers.create("sgd", 0.1, {"a": 1.0, "b": 0.5}, weight_decay=0.01,
                                decay="decoupled")
    zero = np.zeros((3, 2), "float32")
    [(da, db)] = run_steps(opt, [a, b], [[zero, zero]])
    np.testing.assert_allclose(da, -2.0 * 0.1 * 0.01, rtol=1e-4)
    np.testing.assert_allclose(db, -2.0 * 0.05 * 0.01, rtol=1e-4)
    # no_decay exempts matching variables from the L2 term.
    a, b = two_variables(value=2.0)
    opt = lr_multipliers.create("sgd", 0.1, {}, weight_decay=0.01, no_decay=["b"])
    [(da, db)] = run_steps(opt, [a, b], [[zero, zero]])
    np.testing.assert_allclose(da, -2.0 * 0.1 * 0.01, rtol=1e-4)
    assert not np.any(db)


def test_bad_optimizer_settings():
    with pytest.raises(UserError, match="--optimizer"):
        lr_multipliers.create("sgdd", 0.1)
    with pytest.raises(UserError, match="--decay"):
        lr_multipliers.create("sgd", 0.1, decay="l1")
    with pytest.raises(UserError, match="--momentum"):
        lr_multipliers.create("adam", 0.1, momentum=0.9)


class TwoWeights(keras.layers.Layer):
    """y = x a + x b: both weights always get the same gradient."""

    def build(self, shape):
        self.a = self.add_weight(shape=(shape[-1], 2), initializer="ones", name="a")
        self.b = self.add_weight(shape=(shape[-1], 2), initializer="ones", name="b")

    def call(self, x):
        return keras.ops.matmul(x, self.a) + keras.ops.matmul(x, self.b)


def test_model_fit_uses_the_multipliers_and_the_private_index_api():
    """Guards the private ``_get_variable_index`` the multipliers rely on (see module doc)."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, TwoWeights(name="two")(inputs))
    opt = lr_multipliers.create("sgd", 0.01, {"two/a": 1.0, "two/b": 0.25}, momentum=0.9)
    model.compile(opt, "mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.zeros((8, 2), "float32")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    layer = model.get_layer("two")
    da, db = layer.a.numpy() - 1.0, layer.b.numpy() - 1.0
    assert np.abs(da).min() > 1e-4
    np.testing.assert_allclose(db * 4, da, rtol=1e-4)
    # The private API: the index of a variable, also when given its backing variable.
    for i, v in enumerate(model.trainable_variables):
        assert opt._get_variable_index(v) == i
        backing = getattr(v, "value", v)
        if keras.backend.backend() == "tensorflow":
            assert opt._get_variable_index(backing) == i
            assert not hasattr(backing, "path")  # why build() resolves by index
    assert opt._var_multipliers == (1.0, 0.25)


def test_saved_model_keeps_the_optimizer(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, TwoWeights(name="two")(inputs))
    opt = lr_multipliers.create("sgd", 0.01, {"two/b": 0.5}, momentum=0.9, weight_decay=1e-3,
                                no_decay=["*/a"])
    model.compile(opt, "mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"TwoWeights": TwoWeights})
    assert type(loaded.optimizer).__name__ == "LRMultipliedSGD"
    assert loaded.optimizer.lr_multipliers == {"two/b": 0.5}
    config = loaded.optimizer.get_config()
    assert config["l2"] == pytest.approx(1e-3) and config["no_decay"] == ["*/a"]


def run_helper(*args, env=None, timeout=300):
    cmd = [sys.executable, os.path.join(HERE, "train_helpers.py"), *args]
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, **(env or {})}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=full_env,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_multipliers_under_mirrored_strategy_two_replicas():
    out = run_helper("mirrored-multipliers")
    assert "replicas=2" in out and "ratio ok" in out


@pytest.mark.slow
def test_jax_backend_layer_surgery_and_multipliers():
    out = run_helper("jax-check", env={"KERAS_BACKEND": "jax"})
    assert "backend=jax" in out and "jax ok" in out
