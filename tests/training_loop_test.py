"""The custom tf.distribute loop (illustration_tl.training.loop): replicas, resume after
SIGKILL, multi-worker, outputs, reduce-on-plateau, mixed precision, divergence."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import train_helpers
from train_helpers import tiny_config, tiny_model

from illustration_tl.errors import UserError
from illustration_tl.models import layer_surgery
from illustration_tl.training.loop import optimize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
HELPER = [sys.executable, os.path.join(HERE, "train_helpers.py"), "train"]


def helper(out, *args, env=None, timeout=300):
    r = subprocess.run(HELPER + [f"--out={out}", *args], capture_output=True, text=True,
                       cwd=ROOT, env={**ENV, **(env or {})}, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def load_weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load_log(path):
    with open(path) as f:
        return json.load(f)


def without_timing(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_second")}
            for h in history]


@pytest.mark.slow
def test_one_and_two_replicas_same_global_batch_same_weights(tmp_path):
    """MirroredStrategy over two logical CPUs == one replica (dropout off: masks differ)."""
    helper(tmp_path, "--replicas=1,2", "--dropout=0", "--epochs=1", "--save_model=0")
    one, two = load_log(tmp_path / "r1" / "log.json"), load_log(tmp_path / "r2" / "log.json")
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert one["steps"] == two["steps"] == 6
    a, b = load_weights(tmp_path / "r1" / "weights.npz"), load_weights(
        tmp_path / "r2" / "weights.npz")
    start = {v.path: v.numpy() for v in train_helpers.tiny_vgg(3, 0, 0.0).model.weights}
    for path in a:
        assert not np.allclose(a[path], start[path]), f"{path} did not train"
        np.testing.assert_allclose(a[path], b[path], rtol=1e-4, atol=1e-6, err_msg=path)
    np.testing.assert_allclose([x["loss"] for x in one["log"]],
                               [x["loss"] for x in two["log"]], rtol=1e-5)


@pytest.mark.slow
def test_sigkill_and_rerun_equals_uninterrupted_run(tmp_path):
    args = ["--deterministic", "--checkpoint_every=2", "--log_every=1", "--epochs=2"]
    helper(tmp_path / "full", *args)
    full = load_weights(tmp_path / "full" / "weights.npz")
    # Kill the second run with SIGKILL once it reports a random step (>= 3, so that the
    # step-2 checkpoint exists), then rerun it.
    kill_at = random.Random().randint(3, 10)
    out = tmp_path / "killed"
    proc = subprocess.Popen(HELPER + [f"--out={out}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=ENV)
    seen = []
    try:
        for line in proc.stdout:
            m = re.search(r"epoch (\d+)/\d+  step (\d+)/(\d+)", line)
            if m:
                seen.append((int(m.group(1)) - 1) * int(m.group(3)) + int(m.group(2)))
                if seen[-1] >= kill_at:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (kill_at, seen)
    assert not (out / "weights.npz").exists()
    rerun = helper(out, *args)
    assert "resuming from" in rerun, rerun
    resumed = load_weights(out / "weights.npz")
    for path in full:
        np.testing.assert_array_equal(full[path], resumed[path], err_msg=f"{path} kill={kill_at}")
    assert without_timing(load_log(out / "log.json")["history"]) == without_timing(
        load_log(tmp_path / "full" / "log.json")["history"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_agree(tmp_path):
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            HELPER + [f"--out={tmp_path}", "--strategy=multi_worker", "--epochs=1",
                      "--checkpoint_every=3", "--log_every=1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**ENV, "TF_CONFIG": json.dumps(tf_config)}))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    logs = [load_log(tmp_path / f"log-worker{i}.json") for i in range(2)]
    assert [log["replicas"] for log in logs] == [2, 2]
    assert [log["steps"] for log in logs] == [6, 6]
    # Lockstep: the same steps with the same (all-reduced) losses on both workers.
    assert [x["step"] for x in logs[0]["log"]] == [x["step"] for x in logs[1]["log"]]
    assert [x["loss"] for x in logs[0]["log"]] == [x["loss"] for x in logs[1]["log"]]
    w0 = load_weights(tmp_path / "weights-worker0.npz")
    w1 = load_weights(tmp_path / "weights-worker1.npz")
    for path in w0:
        np.testing.assert_array_equal(w0[path], w1[path], err_msg=path)
    # Only the chief keeps checkpoints and the model.
    assert os.listdir(tmp_path / "checkpoints") and not any(
        name.startswith(".worker") for name in os.listdir(tmp_path / "checkpoints"))
    assert (tmp_path / "model.keras").exists()


def test_optimize_end_to_end_and_resume_when_done(tmp_path, capsys):
    data = train_helpers.synthetic_data(96, 16)
    result = optimize(tiny_config(tmp_path, epochs=3), data, model_fn=tiny_model())
    printed = capsys.readouterr().out
    assert "img/s" in printed and "ETA" in printed and "epoch 3 done" in printed
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3] and result.steps == 18
    for h in history:
        assert 0 <= h["val_top1"] <= h["val_top5"] <= 1 and h["val_examples"] == 40
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_top1"] > 0.5  # learnable synthetic classes, chance is 1/3
    with open(tmp_path / "history.json") as f:
        assert json.load(f) == history
    assert os.listdir(tmp_path / "logs")  # TensorBoard events
    # A finished run keeps its model and only the latest checkpoint (--keep_checkpoints=1).
    index = [f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index")]
    assert index == ["ckpt-18.index"]
    model, config = layer_surgery.load_trained(str(tmp_path))
    assert config["class_names"] == ["a", "b", "c"] and config["num_classes"] == 3
    assert config["reinit_layers"] == ["block1_conv1", "block1_conv2", "fc1", "fc2",
                                       "predictions"]
    x = train_helpers.synthetic_arrays(4)[0]
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               result.prepared.model.predict(x, verbose=0), rtol=1e-6)
    # Rerunning a finished run resumes from its last checkpoint and trains no more.
    again = optimize(tiny_config(tmp_path, epochs=3), data, model_fn=tiny_model())
    assert "resuming from" in capsys.readouterr().out
    assert again.steps == 18 and again.history == history
    for a, b in zip(again.prepared.model.weights, result.prepared.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_steps_per_execution_and_xla_match_single_steps(tmp_path):
    data = train_helpers.synthetic_data(96, 16)
    runs = {}
    for name, overrides in [("single", {}), ("looped", {"steps_per_execution": 4}),
                            ("xla", {"steps_per_execution": 3, "jit_compile": True})]:
        config = tiny_config(tmp_path / name, epochs=1, save_model=False, **overrides)
        # Dropout off: XLA draws different random numbers for the same seeds.
        result = optimize(config, data, model_fn=tiny_model(dropout=0.0))
        assert result.steps == 6
        runs[name] = {v.path: v.numpy() for v in result.prepared.model.weights}
    for path, value in runs["single"].items():
        np.testing.assert_array_equal(value, runs["looped"][path], err_msg=path)
        np.testing.assert_allclose(value, runs["xla"][path], rtol=1e-3, atol=1e-5,
                                   err_msg=path)


def test_mixed_float16_uses_loss_scaling_and_float32_outputs(tmp_path):
    data = train_helpers.synthetic_data(32, 16)
    result = optimize(tiny_config(tmp_path, epochs=1, mixed_precision="float16",
                                  save_model=False), data, model_fn=tiny_model())
    assert type(result.prepared.optimizer).__name__ == "LossScaleOptimizer"
    model = result.prepared.model
    assert model.get_layer("fc1").compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert np.isfinite(result.history[0]["train_loss"])
    import keras

    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored


def test_learning_rate_reduced_on_plateau_and_checkpointed(tmp_path):
    data = train_helpers.synthetic_data(32, 16)
    config = tiny_config(tmp_path, epochs=2, plateau_monitor="val_top1", plateau_min_delta=2.0,
                         plateau_patience=1, plateau_factor=0.5)
    result = optimize(config, data, model_fn=tiny_model())
    first, second = result.history
    assert "reduced_learning_rate_to" not in first
    assert second["reduced_learning_rate_to"] == pytest.approx(0.005)
    optimizer = result.prepared.optimizer
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.005)
    # The reduced rate is in the last checkpoint: a rerun with more epochs continues from it.
    more = optimize(tiny_config(tmp_path, epochs=3, plateau_monitor="val_top1",
                                plateau_min_delta=2.0, plateau_patience=1,
                                plateau_factor=0.5), data, model_fn=tiny_model())
    assert more.history[2]["learning_rate"] == pytest.approx(0.005)


def test_divergence_stops_with_a_clear_error(tmp_path):
    data = train_helpers.synthetic_data(32, 16)
    with pytest.raises(UserError, match="diverged; lower --learning_rate"):
        optimize(tiny_config(tmp_path, epochs=1, learning_rate=1e6, log_every=1),
                 data, model_fn=tiny_model())
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


@pytest.mark.slow
def test_keep_no_checkpoint_once_the_model_is_saved(tmp_path):
    data = train_helpers.synthetic_data(32, 16)
    optimize(tiny_config(tmp_path, epochs=2, keep_checkpoints=0), data,
             model_fn=tiny_model())
    assert sorted(os.listdir(tmp_path)) == ["history.json", "logs", "model.keras",
                                            "model_config.json"]


def test_bad_strategy_and_resume_mismatch(tmp_path, monkeypatch):
    from illustration_tl.training import distribute

    with pytest.raises(UserError, match="--strategy"):
        distribute.make_strategy("gpus")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    data = train_helpers.synthetic_data(32, 16)
    optimize(tiny_config(tmp_path, epochs=1, save_model=False), data,
             model_fn=tiny_model())
    with pytest.raises(UserError, match="steps per epoch"):
        optimize(tiny_config(tmp_path, epochs=2, batch_size=8, save_model=False),
                 train_helpers.synthetic_data(32, 8), model_fn=tiny_model())
