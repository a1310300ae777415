"""One loader for four folder kinds (issue 19) and a quiet API (issue 23).

``load()``, ``predict --model`` and ``evaluate --model`` accept a ``fit`` run
folder (``run/model``), a ``reproduce`` output folder (``out/export/saved_model``,
written by :func:`export.export_from_artifacts` as ``reproduce``'s export stage
does), an ``export`` folder and the SavedModel folder itself. The ``fit`` run comes
from a plain script calling ``illustration_tl.fit`` and ``load().predict``, whose
stdout and stderr must hold no line from TensorFlow's C++ logging, absl or tqdm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from illustration_tl.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
ENV = {k: v for k, v in os.environ.items()
       if k not in ("TF_CPP_MIN_LOG_LEVEL", "TQDM_DISABLE")}  # the API must quiet itself
ENV["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
NOISE = re.compile(r"^[IWEF]\d{4} |oneDNN|cuda|cuInit|absl::|cpu_feature_guard|"
                   r"rebuild TensorFlow|it/s\]|\d+%\||Generating splits|Shuffling|"
                   r"(?-i:^WARNING:|^INFO:)|Traceback", re.IGNORECASE)  # absl's, not ours


def _bird() -> str:
    return os.path.join(SMALL, "bird", sorted(os.listdir(os.path.join(SMALL, "bird")))[0])


def _plain_script(tmp_path, verbose: int) -> subprocess.CompletedProcess:
    images = tmp_path / "images"
    if not images.exists():
        for c in ("bird", "flower", "fruit"):
            shutil.copytree(os.path.join(SMALL, c), images / c)
    script = tmp_path / f"plain_{verbose}.py"
    script.write_text(textwrap.dedent(f"""
        import illustration_tl
        clf = illustration_tl.fit({str(images)!r}, output={str(tmp_path / 'run')!r},
                                  weights=None, image_size=32, verbose={verbose})
        names, probs = illustration_tl.load({str(tmp_path / 'run')!r},
                                            verbose={verbose}).predict([{_bird()!r}])
        print("PREDICTED", names[0], round(float(probs.sum()), 4))
    """))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """A tiny `fit` run made by a plain script with verbose=1, and its output."""
    tmp = tmp_path_factory.mktemp("quiet")
    r = _plain_script(tmp, 1)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r


@pytest.mark.slow
def test_the_api_prints_plain_progress_and_no_library_noise(fit_run):
    tmp, r = fit_run
    noisy = [line for line in (r.stdout + r.stderr).splitlines() if NOISE.search(line)]
    assert noisy == [], noisy[:10]
    assert "PREDICTED" in r.stdout and "chosen:" in r.stdout
    assert r.stderr.strip(), "verbose=1 prints progress lines"
    # verbose=0 on the finished run: nothing at all but the script's own line
    quiet = _plain_script(tmp, 0)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]
    assert quiet.stdout.splitlines() == [line for line in r.stdout.splitlines()
                                         if line.startswith("PREDICTED")]


@pytest.fixture(scope="module")
def four_kinds(fit_run, tmp_path_factory):
    """{kind: folder} for the four folder kinds, each holding a model of this project."""
    from illustration_tl.serving import export

    tmp, _ = fit_run
    root = tmp_path_factory.mktemp("kinds")
    export.export_from_artifacts(str(root / "export"), backbone="mobilenetv2", weights="none",
                                 image_size=32, top_k=3)
    # reproduce's export stage: export_from_artifacts into OUT/export/saved_model
    export.export_from_artifacts(str(root / "reproduce" / "export" / "saved_model"),
                                 backbone="mobilenetv2", weights="none", image_size=32)
    return {"fit run": str(tmp / "run"), "reproduce output": str(root / "reproduce"),
            "export": str(root / "export"), "SavedModel": str(tmp / "run" / "model")}


@pytest.mark.slow
def test_load_accepts_the_four_folder_kinds(four_kinds):
    import illustration_tl
    from illustration_tl.serving import predict

    expected = {"fit run": "model", "reproduce output": os.path.join("export", "saved_model"),
                "export": "", "SavedModel": ""}
    for kind, folder in four_kinds.items():
        resolved = predict.resolve_model_dir(folder)
        assert resolved == os.path.join(folder, expected[kind]).rstrip(os.sep), kind
        clf = illustration_tl.load(folder, verbose=0)
        res = clf.predict([_bird()])
        assert res.probabilities.shape == (1, len(clf.class_names)) and not res.skipped
        assert res.names[0] in clf.class_names
    assert illustration_tl.load(four_kinds["fit run"]).summary.get("model")


@pytest.mark.slow
def test_predict_and_evaluate_commands_accept_the_four_kinds(four_kinds, tmp_path):
    images = tmp_path / "images" / "bird"
    images.mkdir(parents=True)
    shutil.copy(_bird(), images)
    for i, (kind, folder) in enumerate(four_kinds.items()):
        cmd = "predict" if i % 2 == 0 else "evaluate"
        args = ([f"--images={images}", "--format=json"] if cmd == "predict"
                else [f"--images={images.parent}", f"--output={tmp_path / f'out{i}'}"])
        r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", cmd,
                            f"--model={folder}", *args], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (kind, r.stderr[-2000:])
        if cmd == "predict":
            assert json.loads(r.stdout.splitlines()[0])["classes"], kind
        else:
            doc = json.loads((tmp_path / f"out{i}" / "evaluation.json").read_text())
            assert doc["images"] == 1 and doc["skipped"] == 0, kind


def test_a_folder_of_no_kind_is_one_line_naming_the_four(tmp_path):
    from illustration_tl.serving import predict

    (tmp_path / "model").mkdir()
    os.mkfifo(tmp_path / "model" / "saved_model.pb")  # not a regular file: not a model
    with pytest.raises(UserError) as e:
        predict.resolve_model_dir(str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "`fit` run folder" in msg and "`reproduce`" in msg
    with pytest.raises(UserError, match="is not a folder"):
        predict.resolve_model_dir(str(tmp_path / "missing"))


def test_array_inputs_are_checked(tmp_path):
    from illustration_tl.serving import predict

    with pytest.raises(predict.UnsupportedInput, match="shape"):
        predict._array_image(np.zeros((2, 2, 2)))
    with pytest.raises(predict.UnsupportedInput, match="NaN"):
        predict._array_image(np.full((2, 2, 3), np.nan))
    img = predict._array_image(np.full((2, 3), 300.0))
    assert img.mode == "L" and np.asarray(img).max() == 255


def test_quiet_python_loggers_drop_library_records_only():
    import logging

    from illustration_tl.core import quiet

    quiet.quiet_python_loggers()
    quiet.quiet_python_loggers()  # idempotent: one filter
    absl_logger = logging.getLogger("absl")
    assert absl_logger.filters.count(quiet._keep) == 1

    def record(path, level):
        return logging.LogRecord("absl", level, path, 1, "m", None, None)

    library = os.path.join(os.sep, "x", "tensorflow_datasets", "core", "a.py")
    ours = os.path.join(ROOT, "illustration_tl", "pipelines", "fit.py")
    assert not absl_logger.filter(record(library, logging.WARNING))
    assert absl_logger.filter(record(library, logging.ERROR))
    assert absl_logger.filter(record(ours, logging.WARNING))
