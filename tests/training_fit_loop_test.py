"""The model.fit loop (illustration_tl.training.fit_loop): the same recipe on any backend.

These run on the TensorFlow backend; tests/lr_multipliers_test.py runs the JAX check of
train_helpers.py (``jax-check``), which trains through this loop on JAX too.
"""

import json
import os

import pytest
import train_helpers
from train_helpers import tiny_config, tiny_model

from illustration_tl.training.fit_loop import fit


def test_fit_path_trains_the_same_recipe_resumes_and_logs_to_tensorboard(tmp_path, capsys):
    data = train_helpers.synthetic_data(64, 16)
    result = fit(tiny_config(tmp_path, epochs=2), data, model_fn=tiny_model())
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert type(result.prepared.model.optimizer).__name__ == "LRMultipliedSGD"
    assert result.prepared.model.optimizer.multiplier("block2_conv1/kernel") == 0.1
    assert (tmp_path / "model.keras").exists()
    more = fit(tiny_config(tmp_path, epochs=3), data, model_fn=tiny_model())
    assert "resuming from" in capsys.readouterr().out
    assert [h["epoch"] for h in more.history] == [1, 2, 3]
    assert more.history[:2] == result.history
    # Keras's TensorBoard callback: the fit metrics of each epoch (step = epoch index) ...
    fitted = train_helpers.event_scalars(tmp_path / "logs" / "train")
    assert [step for step, _ in fitted["epoch_loss"]] == [0, 1, 2]
    assert [v for _, v in fitted["epoch_loss"]] == pytest.approx(
        [h["train_loss"] for h in more.history], rel=1e-5)
    assert [v for _, v in fitted["epoch_learning_rate"]] == pytest.approx([0.01] * 3)
    # ... and the epoch records as in the custom loop (step = training step).
    records = train_helpers.event_scalars(tmp_path / "logs")
    assert records["epoch/val_top1"] == [(h["step"], pytest.approx(h["val_top1"]))
                                         for h in more.history]
    assert [step for step, _ in records["epoch/train_loss"]] == [4, 8, 12]


def test_fit_path_reduces_on_plateau_and_resumes_with_the_reduced_rate(tmp_path):
    data = train_helpers.synthetic_data(32, 16)
    plateau = dict(plateau_monitor="val_top1", plateau_min_delta=2.0, plateau_patience=1,
                   plateau_factor=0.5, summaries=False)
    result = fit(tiny_config(tmp_path, epochs=2, **plateau), data, model_fn=tiny_model())
    first, second = result.history
    assert "reduced_learning_rate_to" not in first
    assert second["reduced_learning_rate_to"] == pytest.approx(0.005)
    with open(tmp_path / "checkpoints_fit" / "state.json") as f:
        state = json.load(f)
    assert state == {"epoch": 2, "step": 4, "plateau_best": first["val_top1"],
                     "plateau_wait": 0}
    more = fit(tiny_config(tmp_path, epochs=3, **plateau), data, model_fn=tiny_model())
    assert more.history[2]["learning_rate"] == pytest.approx(0.005)
    assert more.history[2]["reduced_learning_rate_to"] == pytest.approx(0.0025)
    assert not (tmp_path / "logs").exists()  # --nosummaries


def test_fit_path_keeps_no_checkpoint_once_the_model_is_saved(tmp_path):
    data = train_helpers.synthetic_data(32, 16)
    fit(tiny_config(tmp_path, epochs=1, keep_checkpoints=0), data, model_fn=tiny_model())
    assert sorted(os.listdir(tmp_path)) == ["history.json", "logs", "model.keras",
                                            "model_config.json"]


def test_fit_path_stops_at_max_steps_mid_epoch(tmp_path):
    data = train_helpers.synthetic_data(32, 16)                 # 2 steps per epoch
    result = fit(tiny_config(tmp_path, epochs=3, max_steps=3, summaries=False), data,
                 model_fn=tiny_model())
    assert result.steps == 3 and [x["step"] for x in result.log] == [2, 3]
    assert [h["epoch"] for h in result.history] == [1]          # the partial epoch: no record
    with open(tmp_path / "checkpoints_fit" / "state.json") as f:
        assert json.load(f)["epoch"] == 1
    assert (tmp_path / "model.keras").exists()
