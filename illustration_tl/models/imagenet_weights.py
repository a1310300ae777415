"""ImageNet weights that Keras downloads: fetch only the file a run needs, and say in one
line what to do when the download fails (no network).

``keras.applications`` downloads ``weights="imagenet"`` into the Keras cache
(``$KERAS_HOME/models``, default ``~/.keras/models``); without a network the download
ends in chained ``urllib`` tracebacks. :func:`fetch` builds the backbone once with the
weights the run will use (with or without the classifier top: the 58 MB no-top VGG16
file instead of the 528 MB one when no fc layer is read) and turns a failed download
into a :class:`UserError` naming ``--weights=PATH`` and the cache path.
"""

from __future__ import annotations

import os
import re
import urllib.error
from typing import Any

from illustration_tl.errors import UserError

__all__ = ["cache_dir", "is_download_failure", "download_error", "fetch"]

_URL_FILE = re.compile(r"https?://\S+/([^/\s:]+\.(?:h5|keras|weights\.h5))")


def cache_dir() -> str:
    """Where Keras keeps downloaded weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def _chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while error is not None and error not in out and len(out) < 10:
        out.append(error)
        error = error.__cause__ or error.__context__
    return out


def is_download_failure(error: BaseException) -> bool:
    """True for what Keras's ``get_file`` raises when a download fails (no network, a
    refused connection, an HTTP error), anywhere in the exception's chain."""
    for e in _chain(error):
        if isinstance(e, (urllib.error.URLError, ConnectionError, TimeoutError)):
            return True
        if "URL fetch failure" in str(e) or "http error" in str(e).lower():
            return True
    return False


def download_error(backbone: str, error: BaseException, flag: str = "--weights") -> UserError:
    """The one line for a failed ImageNet download: the file, the cache, the fix."""
    found = next((m.group(1) for e in _chain(error) for m in [_URL_FILE.search(str(e))] if m),
                 None)
    where = os.path.join(cache_dir(), found) if found else cache_dir() + os.sep
    return UserError(f"{flag}=imagenet: could not download the {backbone} ImageNet weights "
                     f"(no network?); put the file at {where} or pass a local file with "
                     f"{flag}=PATH")


def fetch(spec: Any, include_top: bool, image_size: int, flag: str = "--weights") -> None:
    """Makes sure the ImageNet weights file of ``spec`` (with or without the classifier
    top) is in the Keras cache, downloading it if needed; a failed download is one
    :class:`UserError` line (:func:`download_error`)."""
    kwargs: dict[str, Any] = {"include_top": include_top, "weights": "imagenet"}
    if not include_top:
        kwargs["input_shape"] = (image_size, image_size, 3)
    try:
        spec.application()(**kwargs)
    except Exception as e:  # noqa: BLE001 - only download failures are turned into a line
        if is_download_failure(e):
            raise download_error(spec.name, e, flag) from None
        raise
