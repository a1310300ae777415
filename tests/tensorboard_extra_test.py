"""TensorBoard is an extra (``pip install illustration-tl[tensorboard]``): ``optimize``
still writes its logs without the package.

On the TensorFlow backend ``optimize`` trains with the custom loop, whose scalars are
written by ``training.reporting`` with TensorFlow alone; the ``model.fit`` loop (other
backends) writes its epoch scalars through ``training.reporting`` too (Keras's own
TensorBoard callback raises ``TBNotInstalledError`` without the package).
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "tests")

# Runs in a fresh process where `import tensorboard` fails as if it were not installed.
_SCRIPT = r'''
import importlib.abc, json, os, sys

class NoTensorBoard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
        return None

sys.meta_path.insert(0, NoTensorBoard())
sys.path.insert(0, sys.argv[2])
import train_helpers
from train_helpers import tiny_config, tiny_model
from illustration_tl.training.fit_loop import fit
from illustration_tl.training.loop import optimize

out, loop = sys.argv[1], sys.argv[3]
data = train_helpers.synthetic_data(32, 16)
train = optimize if loop == "custom" else fit
train(tiny_config(out, epochs=2), data, model_fn=tiny_model())
found = {"logs": train_helpers.event_scalars(os.path.join(out, "logs"))}
if loop == "fit":
    found["train"] = train_helpers.event_scalars(os.path.join(out, "logs", "train"))
assert not [m for m in sys.modules if m.split(".")[0] == "tensorboard"]
print(json.dumps({k: sorted(v) for k, v in found.items()}))
'''


def test_setup_lists_tensorboard_as_an_extra_only():
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        text = f.read()
    install = text[text.index("install_requires=["):text.index("extras_require={")]
    assert '"tensorboard"' not in install
    assert re.search(r'"tensorboard": \["tensorboard"\]', text)


def _train_without_tensorboard(out, loop: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(out), HERE, loop],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_optimize_writes_logs_without_the_tensorboard_package(tmp_path):
    """The custom loop: what `optimize` runs on the TensorFlow backend."""
    tags = _train_without_tensorboard(tmp_path, "custom")["logs"]
    assert {"epoch/val_top1", "epoch/train_loss", "train/loss"} <= set(tags)


def test_fit_loop_writes_logs_without_the_tensorboard_package(tmp_path):
    """The model.fit loop: what `optimize` runs on the JAX and torch backends."""
    tags = _train_without_tensorboard(tmp_path, "fit")
    assert "epoch/val_top1" in tags["logs"]
    assert {"epoch_loss", "epoch_learning_rate"} <= set(tags["train"])
