"""``illustration-tl serve`` on 127.0.0.1: requests/s and p50/p99 latency with N clients.

    python benchmarks/serve_bench.py [--backbone=mobilenetv2 --image_size=96
        --clients=1,4,16 --seconds=20 --max_requests=400]

Exports a small softmax classifier (random weights: speed does not depend on them),
starts the server in this process on a free port of 127.0.0.1, and for each client
count runs that many threads, each sending one real clip-art PNG per request
(``{"instances": [{"image_bytes": {"b64": ...}}]}``, as a TensorFlow Serving client
would) over its own keep-alive connection, until ``--seconds`` or ``--max_requests``.
Side by side, in the same process: the model alone (``Predictor.classify_pixels`` on
one already-decoded image, serially), so ``overhead`` is what HTTP, JSON, base64 and
decoding add per request. Writes ``benchmarks/results/serve_bench.json``.

On a GPU host, try ``--backbone=vgg16 --image_size=224 --clients=1,8,32``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import platform
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CLIPART = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")


def clipart(n: int) -> list[bytes]:
    """The bytes of up to ``n`` real clip-art files, across classes."""
    paths = []
    for cls in sorted(os.listdir(CLIPART)):
        folder = os.path.join(CLIPART, cls)
        if os.path.isdir(folder):
            paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    out = []
    for p in paths[:n]:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def export_model(path: str, backbone: str, image_size: int, classes: int) -> None:
    import keras

    from illustration_tl.models import backbones
    from illustration_tl.serving import export

    keras.utils.set_random_seed(0)
    model = backbones.get(backbone).application()(
        weights=None, input_shape=(image_size, image_size, 3), classes=classes)
    export.export_classifier(path, model=model, backbone=backbone, image_size=image_size,
                             class_names=[f"class{i}" for i in range(classes)])


def client(port: int, bodies: list[bytes], deadline: float, budget: Any,
           latencies: list[float]) -> int:
    """One client thread: requests over one keep-alive connection until told to stop."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    sent = errors = 0
    try:
        while time.monotonic() < deadline and budget.take():
            body = bodies[sent % len(bodies)]
            start = time.perf_counter()
            conn.request("POST", "/v1/models/model:predict", body,
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            latencies.append(time.perf_counter() - start)
            errors += r.status != 200
            sent += 1
    finally:
        conn.close()
    return errors


class Budget:
    """At most ``n`` requests over all clients."""

    def __init__(self, n: int):
        self.left, self.lock = n, threading.Lock()

    def take(self) -> bool:
        with self.lock:
            self.left -= 1
            return self.left >= 0



def run_clients(port: int, bodies: list[bytes], clients: int, seconds: float,
                max_requests: int) -> dict:
    latencies: list[float] = []
    budget = Budget(max_requests)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        errors = sum(pool.map(lambda _: client(port, bodies, start + seconds, budget,
                                               latencies), range(clients)))
    wall = time.monotonic() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": int(errors),
            "seconds": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenetv2")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--max_requests", type=int, default=400)
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "serve_bench.json"))
    args = p.parse_args()

    import tensorflow as tf

    from illustration_tl.serving import server
    from illustration_tl.serving.predict import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        export_model(model_dir, args.backbone, args.image_size, args.classes)
        predictor = Predictor(model_dir)
        images = clipart(16)
        bodies = [json.dumps({"instances": [{"image_bytes": {
            "b64": base64.b64encode(data).decode()}}]}).encode() for data in images]

        srv = server.make_server(predictor, port=0)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        port = srv.server_address[1]
        run_clients(port, bodies, 2, 5, 20)  # warm-up: tracing, first allocations

        # The model alone on one decoded image per call, serially.
        pixels = [srv.service.prepare(0, data) for data in images]
        n, start = 0, time.monotonic()
        while time.monotonic() - start < min(args.seconds, 10):
            predictor.classify_pixels(tf.stack([pixels[n % len(pixels)]]))
            n += 1
        model_ms = (time.monotonic() - start) / n * 1000

        rows = []
        for clients in (int(c) for c in args.clients.split(",")):
            row = run_clients(port, bodies, clients, args.seconds, args.max_requests)
            rows.append(row)
            print(json.dumps(row), flush=True)
        srv.shutdown()
        srv.server_close()

    result = {
        "what": "illustration-tl serve, POST /v1/models/model:predict, one PNG per request, "
                "N client threads on 127.0.0.1 over keep-alive connections",
        "model": {"backbone": args.backbone, "image_size": args.image_size,
                  "classes": args.classes, "weights": "random (speed only)"},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                   f"TensorFlow {tf.__version__}",
        "model_alone_ms_per_image": round(model_ms, 1),
        "model_alone_images_per_s": round(1000 / model_ms, 2),
        "runs": rows,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"model alone: {model_ms:.1f} ms/image; wrote {args.output}")


if __name__ == "__main__":
    main()
