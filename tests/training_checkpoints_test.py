"""Run state and checkpoints of the custom loop (illustration_tl.training.checkpoints)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import train_helpers

from illustration_tl.errors import UserError
from illustration_tl.training import lr_multipliers
from illustration_tl.training.checkpoints import RunCheckpoints, RunState
from illustration_tl.training.plateau import PlateauState


def parts():
    model = train_helpers.tiny_vgg(3, 0).model
    optimizer = lr_multipliers.create("sgd", 0.01, {}, momentum=0.9)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_state_round_trip_and_steps_per_epoch_check(tmp_path):
    strategy = tf.distribute.get_strategy()
    model, optimizer = parts()
    state = RunState(6)
    assert state.plateau() == PlateauState(None, 0)
    state.step.assign(9)
    state.epoch.assign(1)
    state.epoch_totals.assign([8.0, 12.0, 16.0])
    state.set_plateau(PlateauState(0.75, 2))
    saved = RunCheckpoints(str(tmp_path), model, optimizer, state, strategy, keep=1)
    assert saved.restore() is None
    saved.save()
    assert saved.latest().endswith("ckpt-9")
    expected = [v.numpy() for v in model.weights]

    model2, optimizer2 = parts()
    again = RunState(6)
    resumed = RunCheckpoints(str(tmp_path), model2, optimizer2, again, strategy, keep=1)
    assert resumed.restore().endswith("ckpt-9")
    assert (int(again.step.numpy()), int(again.epoch.numpy())) == (9, 1)
    assert again.train_means() == (0.5, 0.75)
    assert again.plateau() == PlateauState(0.75, 2)
    for a, b in zip(model2.weights, expected):
        np.testing.assert_array_equal(a.numpy(), b)

    model3, optimizer3 = parts()
    other = RunCheckpoints(str(tmp_path), model3, optimizer3, RunState(5), strategy, keep=1)
    with pytest.raises(UserError, match="written with 6 steps per epoch, this run has 5"):
        other.restore()


def test_keep_zero_removes_every_checkpoint_once_done(tmp_path):
    model, optimizer = parts()
    state = RunState(2)
    checkpoints = RunCheckpoints(str(tmp_path), model, optimizer, state,
                                 tf.distribute.get_strategy(), keep=0)
    for step in (2, 4):
        state.step.assign(step)
        checkpoints.save()
    assert sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index")) == [
        "ckpt-4.index"]                            # max(1, keep) while training
    checkpoints.prune(1)
    assert os.listdir(tmp_path / "checkpoints")
    checkpoints.prune(0)
    assert not (tmp_path / "checkpoints").exists()
