"""Issue 19: the export's networks on Keras's JAX backend. ``export.tf_model`` rebuilds a
JAX-backend Keras model with TensorFlow (outputs equal, several outputs kept), and
``export_classifier`` writes a SavedModel that passes the op allowlist and scores as the
JAX model does. KERAS_BACKEND must be set before keras is imported: a subprocess."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ON_JAX = r'''
import json, sys
import keras
import numpy as np
import tensorflow as tf
from illustration_tl.serving import export, model_check, predict

assert keras.backend.backend() == "jax"
keras.utils.set_random_seed(0)
image = keras.Input((8, 8, 3))
conv = keras.layers.Conv2D(4, 3, activation="relu")(image)
pooled = keras.layers.GlobalAveragePooling2D()(conv)
probs = keras.layers.Dense(3, activation="softmax")(pooled)
two = keras.Model(image, [pooled, probs])
x = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")

network = export.tf_model(two)
got = tf.function(lambda t: network(t))(tf.constant(x))
want = [np.asarray(o) for o in two(x)]
multi = [float(np.abs(np.asarray(g) - w).max()) for g, w in zip(got, want)]

head = keras.Model(image, probs)
export.export_classifier(sys.argv[1], model=head, backbone="vgg16", image_size=8,
                         class_names=["a", "b", "c"], top_k=2)
model_check.check_saved_model(sys.argv[1])
served = predict.Predictor(sys.argv[1]).classify_pixels(x)["all_scores"]
from illustration_tl.models import backbones
expected = np.asarray(head(np.asarray(backbones.get("vgg16").preprocess_input(x))))
print(json.dumps({"outputs": len(got), "multi": multi,
                  "served": float(np.abs(served - expected).max())}))
'''


def test_tf_model_and_export_on_jax(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", _ON_JAX, str(tmp_path / "model")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["outputs"] == 2
    assert max(doc["multi"]) < 1e-4
    assert doc["served"] < 1e-5
    assert (tmp_path / "model" / "saved_model.pb").is_file()
