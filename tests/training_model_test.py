"""The network and optimizer of a training run (illustration_tl.training.model)."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf
import train_helpers

from illustration_tl.training.config import TrainConfig
from illustration_tl.training.model import describe, model_config, needs_top_weights, prepare

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}


def test_paper_recipe_skips_the_imagenet_top_it_would_overwrite():
    assert not needs_top_weights(TrainConfig(output_dir="x"))
    assert needs_top_weights(TrainConfig(output_dir="x", reinit_layers="1-10"))
    assert needs_top_weights(TrainConfig(output_dir="x", image_size=64))


def test_prepare_reinitializes_and_multiplies_the_chosen_layers():
    config = train_helpers.tiny_config("x", learning_rate=0.02)
    prepared = prepare(config, 3, tf.distribute.get_strategy(), train_helpers.tiny_model())
    assert prepared.reinit_layers == ["block1_conv1", "block1_conv2", "fc1", "fc2",
                                      "predictions"]
    assert prepared.layer_multipliers["block2_conv1"] == 0.1
    assert prepared.multipliers["block2_conv1/kernel"] == 0.1
    assert prepared.multipliers["fc1/kernel"] == 1.0
    assert type(prepared.optimizer).__name__ == "LRMultipliedSGD"
    rows = {}
    for line in describe(prepared, config).splitlines():
        cols = line.split()
        if cols and cols[0].isdigit():
            rows[int(cols[0])] = (cols[1], cols[-2], cols[-1])
    assert rows == {1: ("block1_conv1", "yes", "0.02"), 2: ("block1_conv2", "yes", "0.02"),
                    3: ("block2_conv1", "no", "0.002"), 4: ("fc1", "yes", "0.02"),
                    5: ("fc2", "yes", "0.02"), 6: ("predictions", "yes", "0.02")}
    written = model_config(config, ["a", "b", "c"], prepared)
    assert written["num_classes"] == 3 and written["class_names"] == ["a", "b", "c"]
    assert written["reinit_layers"] == prepared.reinit_layers
    assert (written["reinit_spec"], written["lr_multipliers"]) == (
        train_helpers.TINY_REINIT, train_helpers.TINY_MULTIPLIERS)


@pytest.mark.slow
def test_dry_run_of_the_paper_preset_through_the_cli():
    r = subprocess.run(
        [sys.executable, "-m", "illustration_tl.cli", "optimize",
         "--preset=paper_vgg19", "--weights=none", "--image_size=32",
         "--num_classes=5", "--dry_run", "--strategy=default"],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {}
    for line in r.stdout.splitlines():
        cols = line.split()
        if cols and cols[0].isdigit():
            rows[int(cols[0])] = (cols[1], cols[-2], cols[-1])
    assert len(rows) == 19
    for n in list(range(1, 11)) + [17, 18, 19]:
        assert rows[n][1:] == ("yes", "0.01"), rows[n]
    for n in range(11, 17):
        assert rows[n][1:] == ("no", "0.0001"), rows[n]
    assert rows[11][0] == "block4_conv3" and rows[17][0] == "fc1"
    assert "weight decay 0.0005 (l2)" in r.stdout and "momentum 0.9" in r.stdout
