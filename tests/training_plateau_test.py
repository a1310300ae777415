"""Reduce-on-plateau (illustration_tl.training.plateau), the schedule of both training loops."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from illustration_tl.training.config import TrainConfig
from illustration_tl.training.plateau import PlateauState, ReduceOnPlateau


def run(plateau, values, learning_rate=0.01, metric=None):
    """Feeds one record per value; returns the learning rate after each epoch and the
    epochs (1-based) that reduced it."""
    metric = metric or plateau.monitor
    state, rates, reduced_at = PlateauState(), [], []
    for epoch, value in enumerate(values, 1):
        record = {"train_loss": value} if metric == "train_loss" else {
            metric: value, "train_loss": 99.0}
        state, new_rate = plateau.update(state, record, learning_rate)
        if new_rate is not None:
            learning_rate = new_rate
            reduced_at.append(epoch)
        rates.append(learning_rate)
    return rates, reduced_at


def test_loss_reduced_after_patience_epochs_without_improvement():
    plateau = ReduceOnPlateau("val_loss", factor=0.1, patience=2, min_delta=0.0)
    rates, reduced_at = run(plateau, [1.0, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85, 0.85])
    # 0.95 and 0.91 do not beat 0.9: reduced at epoch 4; the wait restarts, 0.92 and
    # 0.8 (an improvement) follow, then two more without one: reduced at epoch 8.
    assert reduced_at == [4, 8]
    assert rates == pytest.approx([0.01, 0.01, 0.01, 1e-3, 1e-3, 1e-3, 1e-3, 1e-4])


@pytest.mark.parametrize("monitor", ["val_top1", "val_top5"])
def test_accuracies_are_maximized(monitor):
    plateau = ReduceOnPlateau(monitor, factor=0.5, patience=1, min_delta=0.0)
    assert run(plateau, [0.2, 0.3, 0.4])[1] == []
    assert run(plateau, [0.4, 0.3])[1] == [2]


def test_a_change_within_min_delta_is_no_improvement():
    plateau = ReduceOnPlateau("val_loss", factor=0.5, patience=1, min_delta=0.1)
    assert run(plateau, [1.0, 0.95])[1] == [2]
    assert run(plateau, [1.0, 0.85])[1] == []
    top1 = ReduceOnPlateau("val_top1", factor=0.5, patience=1, min_delta=0.1)
    assert run(top1, [0.5, 0.55])[1] == [2]
    assert run(top1, [0.5, 0.65])[1] == []


def test_rate_floor_and_patience_zero():
    plateau = ReduceOnPlateau("val_loss", factor=0.1, patience=0, min_delta=0.0,
                              min_learning_rate=5e-4)
    # patience 0: every epoch without improvement reduces (the first one always improves).
    rates, reduced_at = run(plateau, [1.0, 1.0, 1.0, 1.0])
    assert reduced_at == [2, 3]            # 1e-2 -> 1e-3 -> 5e-4 (floor), then no change
    assert rates == pytest.approx([0.01, 1e-3, 5e-4, 5e-4])
    state, new_rate = plateau.update(PlateauState(1.0, 0), {"val_loss": 2.0}, 5e-4)
    assert new_rate is None and state == PlateauState(1.0, 0)   # the wait restarts anyway


def test_falls_back_to_train_loss_minimized_without_the_monitor():
    plateau = ReduceOnPlateau("val_top1", factor=0.5, patience=1, min_delta=0.0)
    assert plateau.watched({"train_loss": 1.0}) == "train_loss"
    assert plateau.watched({"train_loss": 1.0, "val_top1": 0.5}) == "val_top1"
    # Falling train loss is an improvement even though the monitor is maximized.
    assert run(plateau, [1.0, 0.8, 0.6], metric="train_loss")[1] == []
    assert run(plateau, [1.0, 1.2], metric="train_loss")[1] == [2]


def test_stored_form_of_the_custom_loop_checkpoint():
    assert PlateauState.from_stored(math.inf, 0) == PlateauState(None, 0)
    assert PlateauState.from_stored(-math.inf, 2) == PlateauState(None, 2)  # older checkpoints
    assert PlateauState.from_stored(0.25, 3) == PlateauState(0.25, 3)
    assert PlateauState(None, 0).stored_best() == math.inf
    assert PlateauState(0.25, 1).stored_best() == 0.25


def test_settings_come_from_the_train_config():
    config = TrainConfig(plateau_monitor="val_top5", plateau_factor=0.2, plateau_patience=3,
                         plateau_min_delta=0.01, min_learning_rate=1e-5)
    assert ReduceOnPlateau.from_config(config) == ReduceOnPlateau("val_top5", 0.2, 3, 0.01, 1e-5)
    assert ReduceOnPlateau.from_config(TrainConfig()) == ReduceOnPlateau()


def reference(values, monitor, factor, patience, min_delta, floor, lr):
    """The rule both loops ran before they shared this module (the fit path's version)."""
    best, wait, rates = None, 0, []
    maximize = monitor in ("val_top1", "val_top5")
    for value in values:
        if best is None or (value > best + min_delta if maximize else value < best - min_delta):
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                new_lr = max(lr * factor, floor)
                if new_lr < lr:
                    lr = new_lr
                wait = 0
        rates.append(lr)
    return rates


@settings(deadline=None)
@given(values=st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=30),
       monitor=st.sampled_from(["val_loss", "val_top1", "val_top5", "train_loss"]),
       factor=st.floats(0.05, 0.95), patience=st.integers(0, 4),
       min_delta=st.sampled_from([0.0, 1e-4, 0.05, 0.5]))
def test_same_schedule_as_before(values, monitor, factor, patience, min_delta):
    plateau = ReduceOnPlateau(monitor, factor, patience, min_delta, min_learning_rate=1e-4)
    assert run(plateau, values)[0] == reference(values, monitor, factor, patience, min_delta,
                                                1e-4, 0.01)
