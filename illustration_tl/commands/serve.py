"""``illustration-tl serve --model=EXPORT [--port=8501] [--host=127.0.0.1] [--model_name=model]``.

Serves an export (``illustration-tl export``, or ``fit``'s ``model/``) with TensorFlow
Serving's REST API (``POST /v1/models/NAME:predict``, ``GET /v1/models/NAME`` and
``/metadata``), so a client moves to the ``tensorflow/serving`` docker image unchanged,
and a page at ``/`` where a person drops an image and sees its top 5. The model is
loaded once, at start; Ctrl-C stops the server.
"""

from illustration_tl.commands import VERBOSE, app
from illustration_tl.core import config_flags
from illustration_tl.serving.server import ServeConfig

# One flag per field of ServeConfig: names, defaults and help live there.
FLAGS = config_flags.define(ServeConfig)


def config() -> ServeConfig:
    """The :class:`server.ServeConfig` the flags describe."""
    return ServeConfig(**config_flags.values(FLAGS, ServeConfig))


def main(argv) -> int:
    from illustration_tl.serving import server

    server.serve(config(), verbose=VERBOSE)
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
