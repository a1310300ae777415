"""The training settings (illustration_tl.training.config)."""

import os
import subprocess
import sys

import pytest

from illustration_tl.errors import UserError
from illustration_tl.training.config import PLATEAU_MONITORS, TrainConfig, TrainDataConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_the_paper_recipe():
    config = TrainConfig()
    assert (config.backbone, config.reinit_layers, config.lr_multipliers) == (
        "vgg19", "1-10,17-19", "11-16=0.01")
    assert (config.learning_rate, config.optimizer, config.momentum, config.weight_decay,
            config.dropout, config.epochs) == (1e-2, "sgd", 0.9, 5e-4, 0.5, 55)
    assert config.plateau_monitor in PLATEAU_MONITORS
    assert TrainDataConfig().dataset == "illustrations/noisy"


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 0}, "--batch_size"),
    ({"plateau_monitor": "accuracy"}, "--plateau_monitor"),
    ({"plateau_factor": 1.0}, "--plateau_factor"),
    ({"output_dir": ""}, "--output_dir"),
    ({"steps_per_execution": 0}, "--steps_per_execution"),
    ({"keep_checkpoints": -1}, "--keep_checkpoints"),
    ({"image_size": 16}, "--image_size"),
])
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**{"output_dir": "x", **overrides}).validate()


def test_output_dir_optional_for_a_dry_run():
    TrainConfig().validate(require_output_dir=False)
    with pytest.raises(UserError, match="--output_dir is required"):
        TrainConfig().validate()


def test_loads_without_keras_or_tensorflow():
    """The command line defines its flags from this module before choosing a backend."""
    code = ("import sys, illustration_tl.training.config; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
