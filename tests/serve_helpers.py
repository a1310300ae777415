"""Shared by the ``serve`` tests: a tiny export, a server in a thread, real clip art."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPART = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
HARD = os.path.join(ROOT, "tests", "fixtures", "hard_cases")
CLASSES = ["bird", "flower", "fruit"]


def clipart_files(n: int) -> list[str]:
    """``n`` real clip-art files from the fixtures, several classes."""
    out = []
    for cls in sorted(os.listdir(CLIPART)):
        folder = os.path.join(CLIPART, cls)
        if os.path.isdir(folder):
            out += [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:2]]
    return out[:n]


def tiny_export(path: str) -> str:
    """A 3-class softmax export at 16 px (random weights, seeded)."""
    import keras

    from illustration_tl.serving import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    export.export_classifier(path, model=model, backbone="vgg16", image_size=16,
                             class_names=CLASSES)
    return path


class Running:
    """A server on 127.0.0.1 (any free port) in a background thread."""

    def __init__(self, model_dir: str, **limits):
        from illustration_tl.serving import server
        from illustration_tl.serving.predict import Predictor

        self.server = server.make_server(Predictor(model_dir), port=0,
                                         limits=server.Limits(**limits))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict | str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read().decode("utf-8")
            kind = r.getheader("Content-Type", "")
            return r.status, json.loads(data) if kind == "application/json" else data
        finally:
            conn.close()

    def predict(self, payload, name: str = "model") -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", f"/v1/models/{name}:predict", body,
                            {"Content-Type": "application/json"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def read_all(s: socket.socket) -> str:
    """Everything a server sends on a connection until it closes it."""
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()
