"""Artifacts carry their settings (issue 11): export reads the embedding model from the SVM.

embed at 64 px, svm, then export with no model flag at all: the export's scores equal
the Python pipeline's; an explicit flag that contradicts the record is refused in one
line naming both values.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "illustration_tl", "demo", "curated")
CLASSES = ["lemon", "padlock", "printer"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "illustration_tl.cli", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)


@pytest.mark.slow
def test_export_takes_the_embedding_settings_from_the_svm(tmp_path):
    manual = tmp_path / "manual"
    for c in CLASSES:
        shutil.copytree(os.path.join(DEMO, c), manual / c)
    tfds_dir, emb, svm_dir, export = (str(tmp_path / n) for n in ("tfds", "emb", "svm", "exp"))
    for step in (
        # Images stored at most 96 px (the demo's are 128): predict must downscale alike,
        # reading that from the export, not from a flag repeated by hand.
        ["build", "--config=curated", f"--manual_dir={manual}", f"--data_dir={tfds_dir}",
         "--max_side=96", "--name=curated96"],
        ["embed", "--backbone=vgg16", "--weights=none", "--image_size=64", "--seed=3",
         "--dataset=illustrations/curated96", f"--data_dir={tfds_dir}", f"--output={emb}"],
        ["svm", f"--embeddings={emb}", f"--output={svm_dir}", "--kernel=rbf", "--C=10",
         "--gamma=1e-4", "--multiclass=ovr", "--n_jobs=1"],
        ["export", f"--svm_dir={svm_dir}", f"--output={export}"],
    ):
        r = _cli(*step)
        assert r.returncode == 0, (step[0], r.stderr[-3000:])
    with np.load(os.path.join(svm_dir, "scores.npz"), allow_pickle=False) as z:
        scores, files = z["scores"], [str(f) for f in z["file_names"]]
    paths = [str(manual / f) for f in files]
    r = _cli("predict", f"--model={export}", f"--images={','.join(paths)}", "--format=json",
             f"--top_k={len(CLASSES)}")
    assert r.returncode == 0, r.stderr[-3000:]
    from illustration_tl.serving import export as export_lib

    assert export_lib.read_metadata(export)["max_side"] == 96
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    got = np.array([[row["scores"][row["indices"].index(c)] for c in range(len(CLASSES))]
                    for row in rows])
    # served: the svm stage's head's probabilities of the evaluated decision scores
    from illustration_tl.heads import calibration, svm

    head, _ = svm.load(svm_dir)
    np.testing.assert_allclose(got, calibration.softmax(scores, head.temperature), atol=1e-5)

    # A contradicting flag: one line naming both sizes and the record.
    r = _cli("export", f"--svm_dir={svm_dir}", "--image_size=224", f"--output={tmp_path}/x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "--image_size=224" in line and "image_size=64" in line and "svm.json" in line
    # A flag that agrees with the record is fine to repeat.
    r = _cli("export", f"--svm_dir={svm_dir}", "--image_size=64", "--backbone=vgg16",
             f"--output={tmp_path}/y")
    assert r.returncode == 0, r.stderr[-3000:]
