"""Issue 19: the ``svm`` stage's numbers stay those of the fixture written before its CV
engine became ``fit``'s (``tests/fixtures/make_paper_grid_golden.py``).

Real features (VGG16 ImageNet, 167 clip-art images, 7 classes): the paper's 64-point
grid and the grid x {none, standard, l2}; every point's mean and per-fold CV top-1 and
top-5 as ``svm.json`` records them, the chosen point, and the saved model's test scores
(``svm.npz`` then; the head, ``head.npz`` + ``head.json``, refitted by ``fit``'s refit,
now), all within 1e-6.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "fixtures", "make_paper_grid_golden.py")
TOLERANCE = 1e-6


def _script():
    spec = importlib.util.spec_from_file_location("make_paper_grid_golden", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden():
    script = _script()
    with open(script.GOLDEN, encoding="utf-8") as f:
        return script, json.load(f), script.load_features()


@pytest.mark.parametrize("grid", ["paper", "paper_x_scalings"])
def test_svm_stage_reproduces_the_golden_grid(golden, grid):
    script, expected, data = golden
    scalings = ("none",) if grid == "paper" else script.SCALINGS
    got = script.run_svm_stage(data, scalings, n_jobs=2)
    want = expected[grid]
    assert len(want["cv"]) == (64 if grid == "paper" else 192)
    assert got["candidates"] == want["candidates"]
    assert set(got["cv"]) == set(want["cv"])
    for key, row in want["cv"].items():
        mine = got["cv"][key]
        for field in ("mean_top1", "mean_top5", "fold_top1", "fold_top5"):
            np.testing.assert_allclose(mine[field], row[field], rtol=0, atol=TOLERANCE,
                                       err_msg=f"{field} of {key}")
    assert got["chosen"] == want["chosen"]
    assert got["test_rows"] == want["test_rows"]
    scores, ref = np.asarray(got["test_scores"]), np.asarray(want["test_scores"])
    np.testing.assert_allclose(scores, ref, rtol=TOLERANCE,
                               atol=TOLERANCE * np.abs(ref).max())
