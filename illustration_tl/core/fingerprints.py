"""Content fingerprints: which file or weights a result came from."""

from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    """sha256 of a file, for recording which weights file was used."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
