"""Shared by tests that need a real (tiny) ``fit`` run folder: openclipart classes from
``tests/fixtures`` (three of ``openclipart_small`` unless told otherwise), random VGG16
weights at 32 px, one resize mode."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
FIFTY = os.path.join(ROOT, "tests", "fixtures", "openclipart_fifty")   # 50 classes x 5


def class_folders(source: str) -> tuple[str, ...]:
    """Every class folder of a fixture set, sorted."""
    return tuple(sorted(e.name for e in os.scandir(source) if e.is_dir()))


def tiny_fit_run(tmp_path: pathlib.Path, classes=("bird", "flower", "house"),
                 source: str = SMALL) -> tuple[pathlib.Path, pathlib.Path]:
    """Runs ``illustration-tl fit`` on a copy of ``classes`` of the fixture set ``source``;
    returns (images, run)."""
    images = tmp_path / "images"
    for c in classes:
        shutil.copytree(os.path.join(source, c), images / c)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit",
                        f"--images={images}", f"--output={out}", "--weights=none",
                        "--image_size=32", "--num_workers=1", "--resize_modes=squash"],
                       env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return images, out


def served_and_numpy(model_dir, images, store, h, size: int = 32):
    """The fit export's probabilities on the test images of ``images`` (PNG files resized
    to ``size``), and the numpy head ``h``'s on the same pixels through the extractor
    rebuilt from the store's recipe: ``(served, numpy)``, to compare."""
    import numpy as np
    import tensorflow as tf

    from illustration_tl.features import multilayer as features
    from illustration_tl.models import backbones

    served = tf.saved_model.load(str(model_dir))
    pixels = np.stack([np.asarray(
        tf.image.resize(tf.io.decode_png(tf.io.read_file(str(images / f)), channels=3),
                        (size, size)), np.float32) for f in store.file_names["test"]
        if (images / f).is_file()])
    assert len(pixels) >= 3
    got = served.signatures["classify_images"](images=tf.constant(pixels))["probabilities"]
    recipe = store.meta["recipe"]
    model, blocks, _ = features.extractor(
        recipe["backbone"], recipe["weights"], recipe["image_size"], recipe["layers"] or None,
        recipe["seed"], precision=recipe.get("precision", "float32"))
    pre = backbones.get(store.meta["backbone"]).preprocess_input
    orig = {b: np.asarray(o) for b, o in zip(blocks, model(pre(pixels.copy())))}
    flip = {b: np.asarray(o) for b, o in zip(blocks, model(pre(pixels[:, :, ::-1].copy())))}
    return got.numpy(), h.probabilities(orig, flip)
