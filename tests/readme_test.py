"""The README's commands run as written (issue 23): the main command offline (random
initialization, said in one line) and ``fit`` on a real folder with default flags, which
offline stops before any work with one line naming ``--weights``. Downloads are made to
fail by an unreachable proxy, whatever the machine's network."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def _offline_env(tmp_path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens
    return dict(os.environ, HOME=str(home), KERAS_HOME=str(home / ".keras"),
                http_proxy=unreachable, https_proxy=unreachable, HTTP_PROXY=unreachable,
                HTTPS_PROXY=unreachable, no_proxy="", NO_PROXY="",
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _shell(command: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1500)


def test_the_readme_is_short_and_names_its_main_command():
    text = _readme()
    assert len(text.splitlines()) < 250
    main = re.search(r"<!-- main-command -->\n```\n(.*?)\n```", text, re.S).group(1)
    assert main == "pip install . && illustration-tl reproduce --preset=demo"


@pytest.mark.slow
def test_main_command_runs_offline_as_written(tmp_path):
    main = re.search(r"<!-- main-command -->\n```\n(.*?)\n```", _readme(), re.S).group(1)
    command = main.split("&&", 1)[1].strip()  # the package is installed already
    r = _shell(command, tmp_path, _offline_env(tmp_path))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "running from random initialization" in r.stdout + r.stderr
    summary = (tmp_path / "runs" / "demo" / "summary.md").read_text()
    assert "Optimized CNN + SVM" in summary and "Traceback" not in r.stderr


@pytest.mark.slow
def test_fit_with_default_flags_offline_is_one_line_naming_weights(tmp_path):
    shown = "illustration-tl fit --images=my_icons --output=runs/mine"
    assert shown in _readme()
    for c in ("bird", "flower", "house"):
        shutil.copytree(os.path.join(SMALL, c), tmp_path / "my_icons" / c)
    r = _shell(shown, tmp_path, _offline_env(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--weights=PATH" in lines[0], r.stderr[-2000:]
    assert ".keras/models/" in lines[0]
    assert not (tmp_path / "runs" / "mine" / "features").exists()


@pytest.mark.slow
def test_serve_and_the_curl_requests_as_written(tmp_path):
    """`serve` on a fit run folder and the README's two curl requests (the port moved to
    a free one), answered in TensorFlow Serving's shape."""
    import json
    import socket
    import sys
    import time

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fit_helpers import tiny_fit_run

    _, run = tiny_fit_run(tmp_path)
    text = _readme()
    serve = re.search(r"^illustration-tl serve --model=runs/mine --port=8501$", text, re.M)
    post = re.search(r"^(curl -s -X POST localhost:8501.*?cat\.png\)\\\"}}\]}\")$", text,
                     re.M | re.S)
    status = re.search(r"^(curl -s localhost:8501/v1/models/model)", text, re.M)
    assert serve and post and status
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    shutil.copytree(run, tmp_path / "runs" / "mine")
    shutil.copy(os.path.join(SMALL, "bird", sorted(os.listdir(os.path.join(SMALL, "bird")))[0]),
                tmp_path / "cat.png")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(["bash", "-c", serve.group(0).replace("8501", port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while True:
            r = _shell(status.group(1).replace("8501", port), tmp_path, env)
            if r.returncode == 0 and r.stdout:
                break
            assert server.poll() is None and time.time() < deadline, server.stderr.read()
            time.sleep(1)
        state = json.loads(r.stdout)["model_version_status"][0]["state"]
        assert state == "AVAILABLE"
        r = _shell(post.group(1).replace("8501", port), tmp_path, env)
        predictions = json.loads(r.stdout)["predictions"]
        assert len(predictions) == 1 and len(predictions[0]["probabilities"]) == 3
        assert predictions[0]["class_names"][0] in ("bird", "flower", "house")
    finally:
        server.terminate()
        server.wait(timeout=60)
