"""``illustration-tl serve``: an export behind TensorFlow Serving's REST API, plus a page.

The REST paths, request and response bodies are TensorFlow Serving's (its REST API
document), so a client written against this server moves to the
``tensorflow/serving`` docker image unchanged:

* ``POST /v1/models/NAME[/versions/1]:predict`` with ``{"instances": [{"image_bytes":
  {"b64": "..."}}, ...]}`` (row format; an instance may also be the bare
  ``{"b64": ...}``, as the signature has one input) answered by ``{"predictions":
  [{"class_names": [...], "class_indices": [...], "scores": [...], "all_scores": [...]},
  ...]}``: the ``serving_default`` outputs of each instance; or ``{"inputs":
  {"image_bytes": [...]}}`` (columnar) answered by ``{"outputs": {NAME: [...]}}``;
* ``GET /v1/models/NAME[/versions/1]``: ``{"model_version_status": [...]}``;
* ``GET /v1/models/NAME[/versions/1]/metadata``: the signatures, read from
  ``saved_model.pb`` as a protobuf (nothing of the model runs);
* any error: an HTTP status and ``{"error": "..."}``, never a traceback.

Images are decoded as the dataset builder decodes them
(:mod:`illustration_tl.datasets.ingestion`: format from the bytes, alpha on white, the
export's ``max_side`` downscale), resized as in training, and classified by
:class:`~illustration_tl.serving.predict.Predictor` (``classify_images``), so a served
image gets the scores ``predict`` gives its file. ``serving_default`` in TensorFlow
Serving decodes inside the graph instead: same output names and shapes, scores equal
up to the decoders' rounding (and the ``max_side`` downscale of larger images).

Bounds: request bodies over :attr:`Limits.max_body_bytes` get 413 without being read;
at most :attr:`Limits.max_connections` connections are served at once (one thread
each; more get 503 at once); model calls run :attr:`Limits.inference_slots` at a
time with at most :attr:`Limits.max_waiting` requests waiting (more get 503);
sockets time out after :attr:`Limits.socket_timeout_s`. Nothing is written to disk.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import urllib.parse
from typing import Any

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import setting
from illustration_tl.errors import UserError
from illustration_tl.serving import page

VERSION = "1"
"""The one version served (TensorFlow Serving's docker image reads ``/models/NAME/1``)."""
SIGNATURE = "serving_default"
INPUT = "image_bytes"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclasses.dataclass
class ServeConfig:
    """The ``serve`` command's settings, one ``illustration-tl serve`` flag each
    (:mod:`config_flags`)."""

    model: str | None = common_settings.export_dir()
    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0: every interface; "
                        "the server has no authentication).", literal=True)
    port: int = setting(8501, "TCP port (TensorFlow Serving's REST port is 8501; 0: any "
                        "free port).")
    model_name: str = setting("model", "Name in the REST paths (/v1/models/NAME:predict), "
                              "as TensorFlow Serving's --model_name.", literal=True)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one server accepts at most (see the module docstring)."""

    max_body_bytes: int = 20 * 2**20
    max_instances: int = 64
    max_connections: int = 64
    inference_slots: int = 2
    max_waiting: int = 16
    socket_timeout_s: float = 30.0


class HttpError(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_config(cfg: ServeConfig) -> None:
    """One :class:`UserError` line for a bad flag, before the model is loaded."""
    if not cfg.model:
        raise UserError("--model is required: an export folder written by `illustration-tl "
                        "export` or the model/ folder of `illustration-tl fit`")
    if not 0 <= cfg.port <= 65535:
        raise UserError(f"--port={cfg.port}: give a TCP port from 0 to 65535")
    if not _NAME.fullmatch(cfg.model_name):
        raise UserError(f"--model_name={cfg.model_name!r}: use 1-64 letters, digits, '.', "
                        "'_' or '-', starting with a letter or digit")


def signature_defs(model_dir: str) -> dict:
    """The SavedModel's signatures as TensorFlow Serving's metadata JSON shows them,
    parsed from ``saved_model.pb`` (a protobuf; no op runs)."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    sigs = proto.meta_graphs[0].signature_def
    return {name: json_format.MessageToDict(sigs[name], preserving_proto_field_name=True,
                                            always_print_fields_with_no_presence=True)
            for name in sorted(sigs) if not name.startswith("__")}


class ModelService:
    """One loaded model behind TensorFlow Serving's REST semantics; thread-safe."""

    def __init__(self, predictor: Any, name: str = "model", limits: Limits = Limits()):
        self.predictor = predictor
        self.name = name
        self.limits = limits
        self._signatures = signature_defs(predictor.path)
        self._slots = threading.BoundedSemaphore(limits.inference_slots)
        self._admitted = threading.BoundedSemaphore(limits.inference_slots + limits.max_waiting)
        meta = predictor.metadata
        self.page = page.render(name, predictor.class_names, meta.get("head", "softmax"),
                                f"{meta.get('backbone', '?')} at {predictor.image_size} px, "
                                f"{len(predictor.class_names)} classes")

    # GET ---------------------------------------------------------------------------
    def status(self) -> dict:
        return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                          "status": {"error_code": "OK",
                                                     "error_message": ""}}]}

    def metadata(self) -> dict:
        return {"model_spec": {"name": self.name, "signature_name": "", "version": VERSION},
                "metadata": {"signature_def": {"signature_def": self._signatures}}}

    # POST --------------------------------------------------------------------------
    def predict(self, body: bytes) -> dict:
        """The response to a ``:predict`` request body; :class:`HttpError` if it is bad
        or the server is saturated."""
        blobs, columnar = self._parse(body)
        if not self._admitted.acquire(blocking=False):
            raise HttpError(503, "server busy: too many requests waiting for the model; "
                                 "retry later")
        try:
            images = [self.prepare(i, data) for i, data in enumerate(blobs)]
            batch = self.predictor.stack(images)
            with self._slots:
                out = self.predictor.classify_pixels(batch)
        finally:
            self._admitted.release()
        rows = [{name: _json_value(out[name][i]) for name in sorted(out)}
                for i in range(len(blobs))]
        if columnar:
            return {"outputs": {name: [row[name] for row in rows] for name in sorted(out)}}
        return {"predictions": rows}

    def _parse(self, body: bytes) -> tuple[list[bytes], bool]:
        """The encoded images of a request and whether it used the columnar format."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise HttpError(400, f"JSON Parse error: {e}") from None
        if not isinstance(request, dict):
            raise HttpError(400, "the request body must be a JSON object with 'instances' "
                                 "or 'inputs'")
        signature = request.get("signature_name", SIGNATURE)
        if signature != SIGNATURE:
            raise HttpError(400, f"Serving signature name: {str(signature)[:64]!r} not found "
                                 f"in signature def; this server serves {SIGNATURE!r}")
        if ("instances" in request) == ("inputs" in request):
            raise HttpError(400, "Missing 'inputs' or 'instances' key" if "instances" not in
                            request else "give 'instances' or 'inputs', not both")
        columnar = "inputs" in request
        items = request["inputs"] if columnar else request["instances"]
        if columnar and isinstance(items, dict):
            if set(items) != {INPUT}:
                raise HttpError(400, f"'inputs' must have the one key {INPUT!r}")
            items = items[INPUT]
        if not isinstance(items, list) or not items:
            raise HttpError(400, "'instances' (or 'inputs') must be a non-empty list")
        if len(items) > self.limits.max_instances:
            raise HttpError(400, f"{len(items)} instances in one request; send at most "
                                 f"{self.limits.max_instances}")
        return [_instance_bytes(i, item, named=not columnar) for i, item in
                enumerate(items)], columnar

    def prepare(self, index: int, data: bytes) -> Any:
        """Pixels of one instance exactly as ``Predictor.prepare`` gives a file's."""
        from illustration_tl.datasets import ingestion

        try:
            return self.predictor.decode_bytes(data, self.predictor.max_side)
        except ingestion.IngestionError as e:
            raise HttpError(400, f"instance {index}: {e}") from None


def _instance_bytes(index: int, item: Any, named: bool) -> bytes:
    """The image bytes of one instance: ``{"image_bytes": {"b64": ...}}`` or, the
    signature having one input, ``{"b64": ...}`` (or a plain string, as UTF-8)."""
    if named and isinstance(item, dict) and INPUT in item:
        if len(item) != 1:
            raise HttpError(400, f"instance {index}: unexpected keys "
                                 f"{sorted(k for k in item if k != INPUT)[:5]}; the one "
                                 f"input is {INPUT!r}")
        item = item[INPUT]
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str):
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, f"instance {index}: 'b64' is not valid base64") from None
    raise HttpError(400, f"instance {index}: expected {{{INPUT!r}: {{'b64': ...}}}} or "
                         "{'b64': ...}")


def _json_value(value: Any) -> Any:
    """A tensor row as TensorFlow Serving writes it: strings as text, float32 at its
    own precision, integers as integers."""
    import numpy as np

    array = np.asarray(value)
    if array.dtype.kind in "SO":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in array.ravel()] if array.ndim else \
            (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    if array.dtype.kind == "f":
        as32 = array.astype(np.float32)
        return [float(str(v)) for v in as32.ravel()] if array.ndim else float(str(as32))
    return array.tolist()


_ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                    r"(?:(?P<meta>/metadata)|:(?P<verb>[A-Za-z]+))?")


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: GET and POST routed to the server's :class:`ModelService`."""

    server: ModelHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "illustration-tl"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.timeout = self.server.service.limits.socket_timeout_s
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _get(self) -> tuple[int, Any]:
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/index.html"):
            return 200, self.server.service.page
        route = self._route(path)
        if route["verb"]:
            raise HttpError(405, f"use POST for :{route['verb']}")
        service = self.server.service
        return 200, service.metadata() if route["meta"] else service.status()

    def _post(self) -> tuple[int, Any]:
        route = self._route(urllib.parse.urlsplit(self.path).path)
        if route["meta"] or not route["verb"]:
            raise HttpError(405, "use GET for a model's status and metadata")
        if route["verb"] != "predict":
            raise HttpError(400, f":{route['verb']} needs a classify or regress signature; "
                                 "this model has a predict signature: use :predict")
        return 200, self.server.service.predict(self._body())

    def _route(self, path: str) -> dict:
        match = _ROUTE.fullmatch(path)
        if not match:
            raise HttpError(404, f"no such path {path[:100]!r}; the REST API is under "
                                 f"/v1/models/{self.server.service.name}")
        route = match.groupdict()
        name = urllib.parse.unquote(route["name"])
        if name != self.server.service.name:
            raise HttpError(404, f"Servable not found for request: Latest({name[:64]})")
        if route["version"] not in (None, VERSION):
            raise HttpError(404, f"Servable not found for request: Specific({name}, "
                                 f"{route['version'][:20]})")
        return route

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "send the body with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HttpError(411, "Content-Length required")
        if not length.strip().isdigit():
            raise HttpError(400, f"bad Content-Length {length[:20]!r}")
        limit = self.server.service.limits.max_body_bytes
        if int(length) > limit:
            raise HttpError(413, f"request body of {int(length)} bytes is over the limit of "
                                 f"{limit} bytes; send fewer or smaller images")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise HttpError(400, "request body shorter than its Content-Length")
        return body

    def _answer(self, handle: Any) -> None:
        try:
            status, payload = handle()
        except HttpError as e:
            status, payload = e.status, {"error": str(e)}
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        except Exception as e:  # noqa: BLE001 - a bug must not leak a traceback
            print(f"serve: internal error on {self.command} {self.path[:100]}: "
                  f"{type(e).__name__}: {' '.join(str(e).split())[:200]}", file=sys.stderr)
            status, payload = 500, {"error": f"internal error ({type(e).__name__})"}
        if status >= 400 and self.command == "POST":
            self.close_connection = True  # an unread or partly read body may follow
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        if isinstance(payload, bytes):
            body, kind = payload, "text/html; charset=utf-8"
        else:
            body, kind = (json.dumps(payload, ensure_ascii=False, indent=1) + "\n").encode(
                "utf-8"), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if kind.startswith("text/html"):
            self.send_header("Content-Security-Policy", "default-src 'none'; "
                             "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                             "img-src blob:; connect-src 'self'")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unsupported method) as JSON."""
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        try:
            self._send(code, {"error": text})
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class ModelHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server with at most ``limits.max_connections`` connections."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], service: ModelService,
                 verbose: bool = False):
        self.service = service
        self.verbose = verbose
        self._connections = threading.BoundedSemaphore(service.limits.max_connections)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection's unexpected error: one line on the console, no traceback."""
        e = sys.exc_info()[1]
        print(f"serve: connection from {client_address[0]}: {type(e).__name__}: "
              f"{' '.join(str(e).split())[:200]}", file=sys.stderr)


def _refuse(request: socket.socket) -> None:
    """503 on a connection over the limit, written without reading the request."""
    body = b'{"error": "server busy: too many connections; retry later"}\n'
    try:
        request.settimeout(1.0)
        request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                        b"application/json\r\nConnection: close\r\nContent-Length: " +
                        str(len(body)).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass


def make_server(predictor: Any, *, host: str = "127.0.0.1",
                port: int = 8501, name: str = "model", limits: Limits = Limits(),
                verbose: bool = False) -> ModelHTTPServer:
    """A bound (not yet serving) server for a loaded :class:`Predictor`; a port in use
    or an address that cannot be bound is a :class:`UserError`."""
    service = ModelService(predictor, name, limits)
    try:
        return ModelHTTPServer((host, port), service, verbose)
    except OSError as e:
        raise UserError(f"--host={host} --port={port}: cannot listen there "
                        f"({e.strerror or e}); pick another --port or --host") from None


def serve(cfg: ServeConfig, verbose: bool = False) -> None:
    """Loads ``cfg.model`` once, then serves it until interrupted (Ctrl-C or SIGTERM)."""
    from illustration_tl.serving.predict import Predictor

    check_config(cfg)
    predictor = Predictor(cfg.model)
    server = make_server(predictor, host=cfg.host, port=cfg.port,
                         name=cfg.model_name, verbose=verbose)
    url = server.url
    print(f"serving {predictor.path} as {cfg.model_name!r} ({len(predictor.class_names)} "
          f"classes) at {url}\n  page:    {url}\n  predict: POST {url}v1/models/"
          f"{cfg.model_name}:predict  (Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `docker stop`, `kill`: stop as on Ctrl-C
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
