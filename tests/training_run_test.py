"""training.run: the one place that picks the training loop for the Keras backend."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, backend: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


def test_tensorflow_backend_gets_a_distribution_strategy():
    r = _python("from illustration_tl.training import run; s = run.make_strategy('auto'); "
                "print(run.backend(), type(s).__module__.split('.')[0])", "tensorflow")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["tensorflow", "tensorflow"]


def test_jax_backend_uses_model_fit_and_refuses_tf_strategies():
    code = ("from illustration_tl.training import run\n"
            "from illustration_tl.errors import UserError\n"
            "print(run.backend(), run.make_strategy('auto'))\n"
            "try:\n    run.make_strategy('mirrored')\nexcept UserError as e:\n    print(e)\n")
    r = _python(code, "jax")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "jax None"
    assert lines[1] == ("--strategy=mirrored needs KERAS_BACKEND=tensorflow; on jax use "
                        "--strategy=auto")
