"""Issue 15: a 2-class dataset of real clip art through every command.

build -> embed -> svm (linear, one-vs-rest: one binary SVM) -> export -> predict,
all through the command line with a randomly initialized VGG16 at 32 px, and
predict's top-1 equals the Python pipeline's (the SVM stage's test scores).
"""

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "illustration_tl", "demo", "curated")
CLASSES = ["analog_clock", "ice_cream"]  # 12 + 13 real PNGs
SIZE = 32


class _Payload:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def plant_payload(directory, marker):
    with open(os.path.join(directory, "svm.joblib"), "wb") as f:
        pickle.dump(_Payload(marker), f)


def _cli(*args, cwd=ROOT):
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", *args],
                       capture_output=True, text=True, cwd=cwd, timeout=900,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return r


@pytest.mark.slow
def test_two_classes_build_embed_svm_export_predict(tmp_path):
    manual = tmp_path / "manual"
    for c in CLASSES:
        shutil.copytree(os.path.join(DEMO, c), manual / c)
    data_dir, emb, svm_dir, export = (str(tmp_path / n) for n in
                                      ("tfds", "emb", "svm", "export"))
    backbone = ["--backbone=vgg16", "--weights=none", f"--image_size={SIZE}"]
    steps = [
        ["build", "--config=curated", f"--manual_dir={manual}", f"--data_dir={data_dir}"],
        ["embed", *backbone, "--dataset=illustrations/curated", f"--data_dir={data_dir}",
         f"--output={emb}"],
        ["svm", f"--embeddings={emb}", f"--output={svm_dir}", "--kernel=linear",
         "--multiclass=ovr", "--C=1", "--gamma=1e-4", "--n_jobs=1"],
        ["export", *backbone, f"--svm_dir={svm_dir}", f"--output={export}"],
    ]
    marker = tmp_path / "marker"
    outs = {}
    for step in steps:
        if step[0] == "export":  # a crafted pickle beside the SVM is never loaded
            plant_payload(svm_dir, marker)
        r = _cli(*step)
        assert r.returncode == 0, (step[0], r.stderr[-3000:])
        outs[step[0]] = r.stdout
        if step[0] == "svm":  # arrays and JSON, no pickle
            assert {"head.npz", "head.json", "svm.json"} <= set(os.listdir(svm_dir))
            assert "svm.joblib" not in os.listdir(svm_dir)
    # Two classes: top-5 would always be 100%, so it is reported as not applicable.
    assert "top-5 n/a (2 classes)" in outs["svm"], outs["svm"]
    info = json.loads((tmp_path / "svm" / "eval.json").read_text())
    assert info["num_classes"] == 2 and info["top5"] is None
    assert all(row["top5"] is None for row in info["per_class"])

    # The Python pipeline's test scores, written by the svm stage.
    with np.load(tmp_path / "svm" / "scores.npz", allow_pickle=False) as z:
        scores, files = z["scores"], [str(f) for f in z["file_names"]]
    assert scores.shape == (len(files), 2) and len(files) >= 2
    paths = [str(manual / f) for f in files]
    plant_payload(export, marker)
    r = _cli("predict", f"--model={export}", f"--images={','.join(paths)}", "--format=json")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["path"] for row in rows] == paths
    assert all(len(row["classes"]) == 2 for row in rows)  # top-k clipped to 2 classes
    assert [row["indices"][0] for row in rows] == scores.argmax(1).tolist()
    assert [row["classes"][0] for row in rows] == [CLASSES[i] for i in scores.argmax(1)]
    # float32 scores of the export: the svm stage's head's probabilities of the Python
    # pipeline's [-d, d] (its softmax at the head's temperature).
    from illustration_tl.heads import calibration, svm

    head, _ = svm.load(str(tmp_path / "svm"))
    got = np.array([[row["scores"][row["indices"].index(c)] for c in range(2)] for row in rows])
    np.testing.assert_allclose(got, calibration.softmax(scores, head.temperature), atol=1e-5)
    np.testing.assert_allclose(scores[:, 0], -scores[:, 1], rtol=1e-6)

    # Rerunning export onto its own output needs --overwrite, and then replaces it.
    r = _cli(*steps[-1])
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    r = _cli(*steps[-1], "--overwrite")
    assert r.returncode == 2 and "svm.joblib" in r.stderr  # the planted file is not ours
    os.remove(os.path.join(export, "svm.joblib"))
    r = _cli(*steps[-1], "--overwrite")
    assert r.returncode == 0, r.stderr[-3000:]
    # The same for svm: a rerun needs --overwrite, which replaces only its own output.
    r = _cli(*steps[2])
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
