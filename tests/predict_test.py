"""``predict`` decodes files exactly as the dataset builder, and reports bad files."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARD = os.path.join(ROOT, "tests", "fixtures", "hard_cases")
UNDECODABLE = {"zero_byte.png", "truncated.png", "not_an_image.png"}


def _hard_cases():
    return sorted(f for f in os.listdir(HARD) if f != "SOURCES.txt")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A curated dataset whose `teapot` class holds every hard case."""
    import tensorflow_datasets as tfds

    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

    manual = tmp_path_factory.mktemp("manual")
    shutil.copytree(HARD, manual / "teapot", ignore=shutil.ignore_patterns("SOURCES.txt"))
    shutil.copytree(os.path.join(ROOT, "illustration_tl", "demo", "curated", "printer"),
                    manual / "printer")
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = builder_lib.build("curated", str(manual), data_dir)
    stored = {}
    for split in builder.info.splits:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            stored[ex["file_name"].decode()] = ex["image"]
    return stored


@pytest.mark.slow
@pytest.mark.parametrize("name", _hard_cases())
def test_predict_decodes_like_the_builder(built, name):
    from illustration_tl.datasets import ingestion
    from illustration_tl.serving import predict

    key = f"teapot/{name}"
    path = os.path.join(HARD, name)
    if name in UNDECODABLE:
        assert key not in built  # the builder skipped it ...
        with pytest.raises(ingestion.IngestionError):  # ... and predict reports it
            predict.Predictor.decode(path, max_side=512)
        return
    np.testing.assert_array_equal(predict.Predictor.decode(path, max_side=512), built[key])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import keras

    from illustration_tl.serving import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    path = str(tmp_path_factory.mktemp("export") / "model")
    export.export_classifier(path, model=model, backbone="vgg16", image_size=16,
                             class_names=["teapot", "printer", "vase"])
    return path


@pytest.mark.slow
def test_predict_command_json_and_exit_code(exported, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(HARD, images / "nested", ignore=shutil.ignore_patterns("SOURCES.txt"))
    r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.predict",
                        f"--model={exported}",
                        f"--images={images}", "--top_k=2", "--format=json", "--batch_size=4"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]  # some files were skipped
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    by_name = {os.path.basename(row["path"]): row for row in rows}
    assert set(by_name) == set(_hard_cases())  # folders are read recursively
    for name, row in by_name.items():
        if name in UNDECODABLE:
            assert row["error"] and not row["classes"]
        else:
            assert row["error"] is None and len(row["classes"]) == 2
            assert set(row["classes"]) <= {"teapot", "printer", "vase"}
            assert row["scores"][0] >= row["scores"][1]
    assert f"{len(UNDECODABLE)} of {len(rows)} files skipped" in r.stderr

    good = [os.path.join(HARD, n) for n in _hard_cases() if n not in UNDECODABLE][:3]
    r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.predict",
                        f"--model={exported}",
                        f"--images={','.join(good)}"], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("  1. ") == 3


def test_predict_rejects_a_folder_that_is_not_an_export(tmp_path):
    r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.predict",
                        f"--model={tmp_path}",
                        f"--images={HARD}"], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 2 and "--model" in r.stderr and "Traceback" not in r.stderr
