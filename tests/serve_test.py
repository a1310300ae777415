"""``illustration-tl serve``: TensorFlow Serving's REST API on 127.0.0.1 with a tiny
export, concurrent clients, bad requests, limits, and the command itself."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from serve_helpers import CLASSES, HARD, ROOT, Running, b64, clipart_files, read_all, tiny_export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return tiny_export(str(tmp_path_factory.mktemp("export") / "model"))


@pytest.fixture(scope="module")
def running(exported):
    r = Running(exported)
    yield r
    r.close()


def test_predict_matches_predictor_and_the_saved_models_serving_default(running, exported):
    import tensorflow as tf

    from illustration_tl.serving import predict

    files = clipart_files(3)
    status, body = running.predict({"instances": [{"image_bytes": {"b64": b64(f)}}
                                                  for f in files]})
    assert status == 200, body
    rows = body["predictions"]
    assert len(rows) == 3
    for row in rows:  # every serving_default output, per instance, as TF Serving writes it
        assert sorted(row) == ["all_scores", "class_indices", "class_names", "scores"]
        assert len(row["all_scores"]) == 3 and len(row["class_names"]) == 3
        assert sorted(row["class_names"]) == sorted(CLASSES)
        assert [CLASSES[i] for i in row["class_indices"]] == row["class_names"]
        assert row["scores"] == sorted(row["scores"], reverse=True)
        assert sum(row["all_scores"]) == pytest.approx(1, abs=1e-5)
    # The same numbers as `predict` gives the files ...
    expected = list(predict.predict_files(predict.Predictor(exported), files, top_k=3,
                                          max_side=512))
    for row, want in zip(rows, expected):
        assert row["class_names"] == want.classes
        np.testing.assert_allclose(row["scores"], want.scores, rtol=1e-5)
    # ... and, within the decoders' rounding, as TF Serving running serving_default.
    loaded = tf.saved_model.load(exported)  # our own tiny export: trusted
    with_bytes = loaded.signatures["serving_default"](
        image_bytes=tf.constant([open(f, "rb").read() for f in files]))
    np.testing.assert_allclose([r["all_scores"] for r in rows],
                               with_bytes["all_scores"].numpy(), atol=2e-2)
    assert set(with_bytes) == set(rows[0])


def test_bare_b64_instances_and_columnar_inputs(running):
    f = clipart_files(1)[0]
    status, rows = running.predict({"instances": [{"b64": b64(f)}]})
    assert status == 200
    status, cols = running.predict({"inputs": {"image_bytes": [{"b64": b64(f)}]},
                                    "signature_name": "serving_default"})
    assert status == 200
    assert cols["outputs"]["class_names"] == [rows["predictions"][0]["class_names"]]
    assert cols["outputs"]["all_scores"] == [rows["predictions"][0]["all_scores"]]


def test_status_and_metadata_are_tf_servings(running):
    status, body = running.request("GET", "/v1/models/model")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {
        "error_code": "OK", "error_message": ""}}]}
    assert running.request("GET", "/v1/models/model/versions/1")[1] == body
    status, meta = running.request("GET", "/v1/models/model/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "model", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert sig["inputs"]["image_bytes"]["tensor_shape"]["dim"][0]["size"] == "-1"
    assert set(sig["outputs"]) == {"class_names", "class_indices", "scores", "all_scores"}
    assert sig["outputs"]["class_names"]["dtype"] == "DT_STRING"


BAD = [
    (b"{not json", 400, "JSON"),
    (b"\xff\xfe", 400, "JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"{}", 400, "Missing 'inputs' or 'instances' key"),
    (json.dumps({"instances": []}).encode(), 400, "non-empty"),
    (json.dumps({"instances": [{"image_bytes": {"b64": "@@not base64@@"}}]}).encode(), 400,
     "instance 0: 'b64' is not valid base64"),
    (json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(b"hello").decode()}}]}
                ).encode(), 400, "instance 0: not an image"),
    (json.dumps({"instances": [{"image_bytes": {"b64": ""}}]}).encode(), 400,
     "instance 0: empty"),
    (json.dumps({"instances": [{"image": 1}]}).encode(), 400, "instance 0: expected"),
    (json.dumps({"instances": [{"image_bytes": {"b64": "AA=="}, "x": 1}]}).encode(), 400,
     "unexpected keys ['x']"),
    (json.dumps({"instances": [{"b64": "AA=="}], "inputs": []}).encode(), 400, "not both"),
    (json.dumps({"instances": [{"b64": "AA=="}], "signature_name": "metadata"}).encode(),
     400, "not found in signature def"),
    (json.dumps({"instances": [{"b64": "AA=="}] * 65}).encode(), 400, "at most 64"),
]


@pytest.mark.parametrize("body,status,text", BAD, ids=[t for _, _, t in BAD])
def test_bad_requests_get_one_json_error(running, body, status, text):
    got, answer = running.predict(body)
    assert got == status and set(answer) == {"error"}
    assert text in answer["error"] and "Traceback" not in answer["error"]


def test_truncated_image_is_a_400(running):
    data = open(os.path.join(HARD, "truncated.png"), "rb").read()
    status, answer = running.predict({"instances": [{"b64": base64.b64encode(data).decode()}]})
    assert status == 400 and answer["error"].startswith("instance 0: ")


@pytest.mark.parametrize("method,path,status,text", [
    ("GET", "/v1/models/other", 404, "Servable not found for request: Latest(other)"),
    ("POST", "/v1/models/other:predict", 404, "Latest(other)"),
    ("GET", "/v1/models/model/versions/2", 404, "Specific(model, 2)"),
    ("GET", "/nope", 404, "no such path"),
    ("POST", "/v1/models/model:classify", 400, "use :predict"),
    ("GET", "/v1/models/model:predict", 405, "use POST"),
    ("PUT", "/v1/models/model:predict", 501, "Unsupported method"),
])
def test_unknown_paths_names_and_methods(running, method, path, status, text):
    got, answer = running.request(method, path, b"{}" if method != "GET" else None,
                                  {"Content-Length": "2"} if method != "GET" else None)
    assert got == status and text in answer["error"], answer


def test_body_over_the_limit_is_a_413_without_reading_it(exported):
    r = Running(exported, max_body_bytes=1000)
    try:
        f = clipart_files(1)[0]
        status, answer = r.predict({"instances": [{"b64": b64(f)}]})
        assert status == 413 and "over the limit of 1000 bytes" in answer["error"]
        # A client announcing 1 GB gets its answer at once: nothing was read.
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
            s.sendall(b"POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 1000000000\r\n\r\n")
            reply = read_all(s)
        assert reply.startswith("HTTP/1.1 413") and '"error"' in reply
        status, answer = r.request("POST", "/v1/models/model:predict", b"{}",
                                   {"Transfer-Encoding": "chunked"})
        assert status == 411
    finally:
        r.close()


def test_concurrent_clients_get_their_own_answers(running):
    """16 threads, 64 requests of 1-3 different images each: every answer is the one for
    its own images (same as the same request alone), within a time bound."""
    files = clipart_files(6)
    requests = [[files[(i + j) % len(files)] for j in range(1 + i % 3)] for i in range(64)]

    def one(paths):
        status, body = running.predict({"instances": [{"b64": b64(p)} for p in paths]})
        assert status == 200, body
        return [row["all_scores"] for row in body["predictions"]]

    alone = {f: one([f])[0] for f in files}
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, requests, timeout=240))
    assert time.monotonic() - start < 240
    for paths, scores in zip(requests, answers):
        assert len(scores) == len(paths)
        for p, s in zip(paths, scores):
            np.testing.assert_allclose(s, alone[p], rtol=1e-5, atol=1e-6)


def test_saturated_server_answers_503_not_a_hang(exported):
    """One model slot, no waiting room: while a slow request holds the slot, others get
    503 at once; connections over the limit get 503 without being read."""
    r = Running(exported, inference_slots=1, max_waiting=0, max_connections=3)
    gate = threading.Event()
    real = r.server.service.predictor.classify_pixels

    def slow(images):
        gate.wait(30)
        return real(images)

    r.server.service.predictor.classify_pixels = slow
    try:
        payload = {"instances": [{"b64": b64(clipart_files(1)[0])}]}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(r.predict, payload)
            time.sleep(0.5)
            status, answer = r.predict(payload)
            assert status == 503 and "server busy" in answer["error"]
            # Hold the remaining connection slots with idle sockets: the next is refused.
            idle = [socket.create_connection(("127.0.0.1", r.port), timeout=10)
                    for _ in range(2)]
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
                reply = read_all(s)
            assert reply.startswith("HTTP/1.1 503") and "too many connections" in reply
            for s in idle:
                s.close()
            gate.set()
            assert first.result(60)[0] == 200
    finally:
        gate.set()
        r.close()


def test_page_is_self_contained(running):
    status, html = running.request("GET", "/")
    assert status == 200 and '<input id="file" type="file"' in html
    for external in ("http://", "https://", "//cdn", "src=\"http"):
        assert external not in html
    assert '["bird", "flower", "fruit"]' in html


def _ctrl_c_as_in_a_terminal() -> None:
    # a shell's background job starts with SIGINT ignored, and Python keeps that: the
    # server must see Ctrl-C however pytest itself was started
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve_cli(*args, timeout=300):
    return subprocess.Popen([sys.executable, "-m", "illustration_tl.cli", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, preexec_fn=_ctrl_c_as_in_a_terminal)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_command_starts_answers_and_stops(exported, tmp_path, stop):
    before = sorted(os.listdir(exported))
    proc = _serve_cli(f"--model={exported}", "--port=0", "--model_name=clipart")
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {exported} as 'clipart'"), line + proc.stderr.read()
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/v1/models/clipart")
        assert conn.getresponse().status == 200
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err
    assert sorted(os.listdir(exported)) == before


@pytest.mark.parametrize("args,text", [
    ((), "--model is required"),
    (("--model={tmp}",), "--model="),
    (("--model={export}", "--port=70000"), "--port=70000: give a TCP port"),
    (("--model={export}", "--model_name=a/b"), "--model_name='a/b'"),
    (("--model={export}", "--port=abc"), "--port"),
])
def test_serve_flag_errors_are_one_line(exported, tmp_path, args, text):
    args = [a.format(tmp=tmp_path, export=exported) for a in args]
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "serve", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and text in r.stderr, r.stderr
    assert r.stderr.startswith("illustration-tl serve: error: ")


def test_port_in_use_is_one_line(exported):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "serve",
                            f"--model={exported}", f"--port={port}"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"--port={port}: cannot listen there" in r.stderr


def test_serve_flags_and_their_shared_help():
    """serve's flags (tests/command_flags_test.py snapshots the other commands'); --model
    has the shared help text (predict's)."""
    script = ("import json; from absl import flags; "
              "import illustration_tl.commands.serve as s; "
              "print(json.dumps({f.name: [f.default, f.help] for f in "
              "flags.FLAGS.get_key_flags_for_module(s.__name__)}))")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert {name: default for name, (default, _) in found.items()} == {
        "model": None, "host": "127.0.0.1", "port": 8501, "model_name": "model"}
    from illustration_tl.core import common_settings

    assert found["model"][1] == common_settings.export_dir().metadata["help"]


def test_a_fit_run_folder_is_served_from_its_model_folder(exported, tmp_path):
    import shutil

    shutil.copytree(exported, tmp_path / "run" / "model")
    r = Running(str(tmp_path / "run"))
    try:
        status, meta = r.request("GET", "/v1/models/model/metadata")
        assert status == 200 and "serving_default" in (
            meta["metadata"]["signature_def"]["signature_def"])
        status, body = r.predict({"instances": [{"b64": b64(clipart_files(1)[0])}]})
        assert status == 200 and len(body["predictions"]) == 1
    finally:
        r.close()
