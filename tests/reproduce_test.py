"""``reproduce`` on a tiny configuration: every stage's outputs, the summary, resuming."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "illustration_tl", "demo")


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """3 curated classes x 8 images and a few noisy classes, copied from the demo set."""
    root = tmp_path_factory.mktemp("sets")
    curated = root / "curated"
    for name in sorted(os.listdir(os.path.join(DEMO, "curated")))[:3]:
        src = os.path.join(DEMO, "curated", name)
        os.makedirs(curated / name)
        for f in sorted(os.listdir(src))[:8]:
            shutil.copy(os.path.join(src, f), curated / name / f)
    noisy = root / "noisy"
    os.makedirs(noisy)
    picked = 0
    for dirpath, _, names in sorted(os.walk(os.path.join(DEMO, "noisy"))):
        for f in sorted(names):
            if any(w in f for w in ("dog", "bear", "car", "phone")) and picked < 40:
                shutil.copy(os.path.join(dirpath, f), noisy / f)
                picked += 1
    return str(curated), str(noisy)


def _tiny_flags(tiny_sets, out, *extra):
    curated, noisy = tiny_sets
    return [f"--curated_dir={curated}",
            f"--noisy_dir={noisy}", f"--output_dir={out}", "--backbone=vgg16", "--weights=none",
            "--image_size=32", "--max_side=64", "--min_images_per_class=2", "--batch_size=8",
            "--epochs=1", "--max_steps=2", "--checkpoint_every=0", "--summaries=false",
            "--reinit_layers=1-10,14-16", "--lr_multipliers=11-13=0.01",
            "--svm_baseline=rbf,1,1e-4,ovr", "--svm_optimized=sigmoid,10,1e-4,ovr", "--svm_jobs=1",
            *extra]


def _reproduce(tiny_sets, out, *extra):
    args = [sys.executable, "-m", "illustration_tl.commands.reproduce",
            *_tiny_flags(tiny_sets, out, *extra)]
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


@pytest.mark.slow
def test_reproduce_tiny_end_to_end_and_resume(tiny_sets, tmp_path):
    out = tmp_path / "run"
    log = _reproduce(tiny_sets, out)
    assert "random initialization" in log
    for stage in ["datasets", "baseline_cnn", "baseline_svm", "optimize", "optimized_cnn",
                  "optimized_svm", "report", "export"]:
        assert (out / stage / "stage.json").is_file(), stage
    for row in ["baseline_cnn", "baseline_svm", "optimized_cnn", "optimized_svm"]:
        assert (out / row / "eval" / "eval.json").is_file(), row
    assert (out / "optimize" / "model.keras").is_file()
    assert (out / "baseline_svm" / "svm" / "head.npz").is_file()
    assert not (out / "baseline_svm" / "svm" / "svm.joblib").exists()
    assert (out / "export" / "saved_model" / "saved_model.pb").is_file()
    assert (out / "report" / "report" / "report.md").is_file()
    # every stage was written beside its folder and swapped in: nothing left aside, and the
    # svm rows point at their own embeddings through a path relative to the result
    aside = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert aside == [".illustration_tl.lock"], aside
    from illustration_tl.evaluation.metrics import EvalResult

    for row in ["baseline_svm", "optimized_svm"]:
        for sub in ["eval", "svm"]:
            r = EvalResult.load(str(out / row / sub))
            assert r.extra["embeddings_dir"] == str(out / row / "embeddings"), (row, sub)
    _exported_scores_match_the_evaluation(out, tiny_sets[0])

    summary = (out / "summary.md").read_text()
    assert "| model | top-1 | top-5 | paper (VGG19) top-1 | paper (VGG19) top-5 |" in summary
    for name, paper in [("Baseline CNN", "26.50"), ("Baseline CNN + SVM", "62.04"),
                        ("Optimized CNN", "49.39"), ("Optimized CNN + SVM", "86.61")]:
        row = next(line for line in summary.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] == paper
        assert 0.0 <= float(cells[1]) <= 100.0
        if "SVM" in name:  # 3 curated classes: top-5 is meaningless, never printed
            assert cells[2] == "n/a"
        else:  # the CNN rows are 1000-way
            assert 0.0 <= float(cells[2]) <= 100.0

    # Table 2: the baseline on the noisy and on the curated test split.
    assert "## Table 2: the ImageNet baseline on both datasets" in summary
    table2 = {line.split("|")[1].strip().split(" ")[0]: [c.strip() for c in
                                                          line.strip("|").split("|")]
              for line in summary.split("## Table 2")[1].split("## Stages")[0].splitlines()
              if line.startswith("| noisy") or line.startswith("| curated")}
    assert set(table2) == {"noisy", "curated"}
    assert table2["curated"][5:7] == ["26.50", "47.40"]
    for cells in table2.values():  # 1000-way top-1/top-5, restricted top-1
        assert all(0.0 <= float(c) <= 100.0 for c in cells[1:4])
    assert table2["curated"][4] == "n/a"  # restricted to 3 classes: no top-5
    assert (out / "baseline_cnn" / "noisy" / "eval" / "eval.json").is_file()
    doc = json.loads((out / "summary.json").read_text())
    assert set(doc["table2"]) == {"noisy", "curated"}
    noisy_eval = json.loads((out / "baseline_cnn" / "noisy" / "eval" / "eval.json").read_text())
    datasets = json.loads((out / "datasets" / "datasets.json").read_text())
    assert doc["table2"]["noisy"]["examples"] == noisy_eval["num_examples"] \
        == datasets["noisy"]["examples"]["test"] > 0
    assert set(doc["table3"]) == {"baseline_cnn", "baseline_svm", "optimized_cnn",
                                  "optimized_svm"}
    assert doc["weights"].startswith("random initialization")

    # A rerun skips every stage; a changed SVM setting reruns that stage and what follows.
    log = _reproduce(tiny_sets, out)
    assert log.count("up to date, skipped") == 8
    log = _reproduce(tiny_sets, out, "--svm_optimized=linear,1,1e-4,ovr")
    assert "[optimized_svm] running" in log and "[optimize] up to date" in log
    assert "[report] running" in log and "[baseline_svm] up to date" in log


# The reproduce command in a process whose Keras backend is JAX (set before keras is
# imported); it prints the backend it ran on first.
_ON_JAX = """
import sys
import keras
print("BACKEND", keras.backend.backend(), flush=True)
from illustration_tl.commands import reproduce
sys.argv = ["reproduce", *sys.argv[1:]]
reproduce.run()
"""


def _exported_scores_match_the_evaluation(out, curated):
    """The export of the best row, loaded through the op allowlist, scores the curated
    test images as that row's evaluation did (the same network, weights and head)."""
    from illustration_tl.datasets import imagenet
    from illustration_tl.serving import predict

    best = json.loads((out / "export" / "export.json").read_text())["best"]
    predictor = predict.Predictor(str(out))             # a reproduce output folder
    with np.load(out / best / "eval" / "scores.npz", allow_pickle=False) as z:
        expected, names = z["scores"], [str(n) for n in z["file_names"]]
    pixels = np.stack([predictor.prepare(os.path.join(curated, n), predictor.max_side)
                       for n in names])
    got = predictor.classify_pixels(pixels.astype(np.float32))["all_scores"]
    if best == "optimized_cnn":  # evaluated spread over the 1000 ImageNet classes
        expected = expected[:, [imagenet.by_wnid(w).index
                                for w in predictor.metadata["wnids"]]]
    if best.endswith("_svm"):  # evaluated by decision scores; served: the head's softmax
        from illustration_tl.heads import calibration, svm

        head, _ = svm.load(str(out / best / "svm"))
        expected = calibration.softmax(expected, head.temperature)
    assert got.shape == expected.shape == (len(names), predictor.num_classes)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_reproduce_tiny_under_jax_exports_a_model_that_predicts(tiny_sets, tmp_path):
    """Issue 19: the whole demo pipeline on Keras's JAX backend, export included (it
    failed there: `dtype object is not a valid JAX array type`)."""
    out = tmp_path / "jax"
    r = subprocess.run([sys.executable, "-c", _ON_JAX, *_tiny_flags(tiny_sets, out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.splitlines()[0] == "BACKEND jax"
    for stage in ["datasets", "baseline_cnn", "baseline_svm", "optimize", "optimized_cnn",
                  "optimized_svm", "report", "export"]:
        assert (out / stage / "stage.json").is_file(), stage
    assert "| export |" in (out / "summary.md").read_text()
    _exported_scores_match_the_evaluation(out, tiny_sets[0])


def test_missing_folder_is_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.reproduce",
                        f"--output_dir={tmp_path}",
                        f"--curated_dir={tmp_path}/nope", f"--noisy_dir={tmp_path}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2
    assert "--curated_dir" in r.stderr and "Traceback" not in r.stderr


def test_without_a_noisy_folder_reproduce_runs_fit(tiny_sets, tmp_path):
    """Issue 13: no noisy set, no §7 optimization: reproduce makes fit's classifier."""
    curated, _ = tiny_sets
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.reproduce",
                        f"--curated_dir={curated}", f"--output_dir={out}", "--backbone=vgg16",
                        "--weights=none", "--image_size=32", "--svm_jobs=1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "no --noisy_dir" in log and "test (" in log
    with open(out / "fit.json") as f:
        summary = json.load(f)
    assert summary["num_test"] > 0 and 0 <= summary["test_top1"] <= 1
    assert os.path.isfile(out / "model" / "saved_model.pb")
    assert not os.path.exists(out / "optimize")        # no training stage ran
    # what reproduce was told carries over to fit's features
    with open(out / "features" / "stage.json") as f:
        stage = f.read()
    assert '"squash"' in stage and '"pad"' not in stage


@pytest.mark.slow
def test_pad_reaches_every_stage_training_included(tiny_sets, tmp_path):
    """--resize_mode=pad is how the baseline, the training data, the embeddings and the
    export all resize (it used to train on squashed images)."""
    out = tmp_path / "pad"
    _reproduce(tiny_sets, out, "--resize_mode=pad")
    config = json.loads((out / "optimize" / "model_config.json").read_text())
    assert config["resize_mode"] == "pad"
    for row in ("baseline_svm", "optimized_svm"):
        meta = json.loads((out / row / "embeddings" / "test" / "metadata.json").read_text())
        assert meta["resize_mode"] == "pad", row
    baseline = json.loads((out / "baseline_svm" / "svm" / "svm.json").read_text())
    assert baseline["embeddings"]["source"]["resize_mode"] == "pad"


def test_multi_worker_strategy_is_made_before_any_stage(tiny_sets, tmp_path):
    """The strategy is created first, so a bad one fails at once, before any stage runs."""
    curated, noisy = tiny_sets
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.reproduce",
                        f"--curated_dir={curated}", f"--noisy_dir={noisy}",
                        f"--output_dir={tmp_path / 'mw'}", "--strategy=multi_worker"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--strategy=multi_worker needs TF_CONFIG" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "mw" / "datasets").exists()


_NO_DEAD_FLAGS = r'''
import json, os, sys
from absl import flags
from illustration_tl.commands import reproduce as command
from illustration_tl.pipelines import reproduce

curated, noisy, other = sys.argv[1:4]
FLAGS = flags.FLAGS
accepted = sorted(f.name for f in FLAGS.get_key_flags_for_module(command.__name__))
base = ["prog", f"--curated_dir={curated}", f"--noisy_dir={noisy}", "--output_dir=out",
        "--weights=none"]


def params(argv):
    FLAGS.unparse_flags()
    FLAGS(argv)
    cfg = command.config()
    w = reproduce.resolve_weights(cfg.backbone, cfg.weights, lambda m: None).description
    return json.dumps(reproduce.stage_params(cfg, w, cfg.tfds_dir or "out/tfds"),
                      sort_keys=True, default=str)


def changed(flag):
    f = FLAGS[flag]
    value = f.value
    if flag in ("curated_dir", "noisy_dir"):
        return other
    if flag == "weights":
        return "auto"
    if flag == "backbone":
        return "vgg16"
    if isinstance(value, bool):
        return str(not value).lower()
    if getattr(f, "parser", None) is not None and hasattr(f.parser, "enum_values"):
        return next(v for v in f.parser.enum_values if v != value)
    if isinstance(value, (int, float)):
        return str(abs(value) + 1)  # in range: -1 (all cores) -> 2
    if isinstance(value, list):
        return ",".join(value + ["colors"])
    return (value or "") + "x"


default = params(base)
dead = [flag for flag in accepted
        if params(base + [f"--{flag}={changed(flag)}"]) == default]
print(json.dumps({"accepted": accepted, "dead": dead}))
'''


def test_every_reproduce_flag_changes_a_stage_key(tiny_sets, tmp_path):
    """No dead flags: changing any flag reproduce accepts changes some stage's inputs,
    except the few that only change how the run goes (reproduce.EXECUTION_ONLY)."""
    from illustration_tl.pipelines import reproduce

    curated, noisy = tiny_sets
    other = tmp_path / "other"
    shutil.copytree(curated, other)
    shutil.copy(__file__, other / "extra.png")  # different tree fingerprint
    r = subprocess.run([sys.executable, "-c", _NO_DEAD_FLAGS, curated, noisy, str(other)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(doc["accepted"]) > 40 and "reinit_layers" in doc["accepted"]
    absl_own = {"flagfile", "undefok", "preset"}
    assert set(doc["dead"]) - absl_own == set(reproduce.EXECUTION_ONLY)


def test_pad_training_batches_are_padded(tiny_sets, tmp_path, monkeypatch):
    """Issue 11: inspect a batch that reproduce --resize_mode=pad hands to training: it is
    the padded pipeline's batch, not the squashed one's."""
    import numpy as np

    from illustration_tl.pipelines import reproduce
    from illustration_tl.training import data as training_data
    from illustration_tl.training import loop

    class Stop(Exception):
        pass

    seen = {}

    def first_batch_then_stop(config, data, **kwargs):
        seen["batch"] = next(iter(data.train(0, None)))[0].numpy()
        seen["config"] = config
        raise Stop

    monkeypatch.setattr(loop, "optimize", first_batch_then_stop)
    curated, noisy = tiny_sets
    out = tmp_path / "run"
    cfg = reproduce.ReproduceConfig(
        output_dir=str(out), curated_dir=curated, noisy_dir=noisy, backbone="vgg16",
        weights="none", image_size=32, resize_mode="pad", batch_size=8,
        curated_options={"max_side": 64},
        noisy_options={"max_side": 64, "min_images_per_class": 2},
        svm_baseline="rbf,1,1e-4,ovr", svm_jobs=1,
        train_overrides={"deterministic": True, "summaries": False})
    with pytest.raises(Stop):
        reproduce.reproduce(cfg, log=lambda m: None)
    assert seen["config"].resize_mode == "pad"
    with open(out / "datasets" / "datasets.json") as f:
        noisy_ds = json.load(f)["noisy"]
    same = {}
    for mode in ("pad", "squash"):
        data = training_data.tfds_data(noisy_ds["dataset"], noisy_ds["data_dir"],
                                       backbone="vgg16", image_size=32, batch_size=8,
                                       deterministic=True, resize_mode=mode)
        reference = next(iter(data.train(0, None)))[0].numpy()
        same[mode] = bool(np.allclose(seen["batch"], reference, atol=1e-4))
    assert same == {"pad": True, "squash": False}
