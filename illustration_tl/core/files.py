"""Files from a user's folder tree, read and written safely.

- :func:`walk` lists the regular files under a folder without ever leaving
  it: symlinks are followed only when they resolve inside the folder,
  folder cycles (``loop/up -> ..``) are detected by ``(st_dev, st_ino)``,
  FIFOs, devices and sockets are never opened, and every entry left out
  (with the reason) is reported instead of silently dropped.
- :func:`display_name` turns any file name (also one that is not UTF-8,
  decoded by Python with ``surrogateescape``) into printable text.
- :func:`read_regular_file` opens only regular files (a FIFO named
  ``.png`` must not hang a build) and reads at most a size cap.
- :func:`atomic_write` writes a file so that readers see either the old or
  the new content: a temporary file in the same folder, fsync, ``os.replace``.
- :class:`FolderLock` lets one process at a time work in an output folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
from typing import IO, Any, Callable, Iterator, Sequence

from illustration_tl.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg")
# Clip art and icon collections are small; a bigger "image" is a mistake or hostile.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024


# --------------------------------------------------------------------------- names


def display_name(name: str) -> str:
    """``name`` as printable, encodable text.

    Bytes that are not UTF-8 (kept by Python as lone surrogates) come out as
    ``\\xNN`` (``caf\\xe9.png``); tabs, newlines and other control characters
    too, so a name is always one field of one line of a TSV.
    """
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:          # surrogateescape'd byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:        # any other lone surrogate
            out.append(f"\\u{code:04x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


# --------------------------------------------------------------------------- walking


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An entry :func:`walk` left out: its path relative to the root, and why."""

    rel: str
    reason: str


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _inside(path: str, root_real: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)


HIDDEN_REASON = ("hidden (its name starts with '.'); not ingested: rename it without the "
                 "leading dot to include it")


def walk(root: str, *, skip_hidden: bool = True, report_hidden: bool = False,
         on_skip: Callable[[Skipped], None] | None = None) -> Iterator[str]:
    """Relative paths ('/'-separated, sorted) of the regular files under ``root``.

    Symlinks (to files or folders) are followed only when their target lies
    inside ``root``; a folder reached twice (a cycle, or two links to one
    folder) is walked once. Left out, each reported to ``on_skip``: links
    leading outside ``root``, dangling or looping links, folder cycles,
    unreadable folders, FIFOs, devices and sockets. Hidden entries (``.*``)
    are left out when ``skip_hidden``: reported (:data:`HIDDEN_REASON`; a hidden
    folder once, as a whole) when ``report_hidden``, else silently.
    """
    root_real = os.path.realpath(root)
    report = on_skip or (lambda s: None)
    try:
        st = os.stat(root)
    except OSError as e:
        report(Skipped(".", f"folder not readable: {e.strerror or e}"))
        return
    seen = {(st.st_dev, st.st_ino)}
    hidden = report if (skip_hidden and report_hidden) else None
    yield from _walk_dir(root, "", root_real, seen, skip_hidden, report, hidden)


def _walk_dir(path: str, rel: str, root_real: str, seen: set, skip_hidden: bool,
              report: Callable[[Skipped], None],
              hidden: Callable[[Skipped], None] | None = None) -> Iterator[str]:
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        report(Skipped(rel or ".", f"folder not readable: {e.strerror or e}"))
        return
    for name in names:
        full = os.path.join(path, name)
        child = f"{rel}/{name}" if rel else name
        if skip_hidden and name.startswith("."):
            if hidden is not None:
                folder = os.path.isdir(full) and not os.path.islink(full)
                hidden(Skipped(child, ("hidden folder" if folder else "hidden file")
                               + HIDDEN_REASON[len("hidden"):]))
            continue
        try:
            lst = os.lstat(full)
        except OSError as e:
            report(Skipped(child, f"cannot stat: {e.strerror or e}"))
            continue
        if stat.S_ISLNK(lst.st_mode):
            try:
                target = os.path.realpath(full, strict=True)
            except (OSError, RuntimeError) as e:
                why = "looping" if getattr(e, "errno", None) == errno.ELOOP or isinstance(
                    e, RuntimeError) else "dangling"
                report(Skipped(child, f"{why} symlink"))
                continue
            if not _inside(target, root_real):
                report(Skipped(child, "symlink to a path outside the input folder; "
                                      "not followed"))
                continue
            try:
                st = os.stat(full)
            except OSError as e:
                report(Skipped(child, f"cannot stat: {e.strerror or e}"))
                continue
        else:
            st = lst
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                report(Skipped(child, "folder already walked (a symlink cycle or a second "
                                      "link to it); not walked again"))
                continue
            seen.add(key)
            yield from _walk_dir(full, child, root_real, seen, skip_hidden, report, hidden)
        elif stat.S_ISREG(st.st_mode):
            yield child
        else:
            report(Skipped(child, f"{_kind(st.st_mode)}, not a regular file; not opened"))


def find_images(root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                flag: str = "--input",
                on_skip: Callable[[Skipped], None] | None = None) -> Iterator[str]:
    """Paths of image files under ``root`` (see :func:`walk`), in sorted order.

    Raises :class:`UserError` naming ``flag`` when ``root`` is not a folder.
    """
    if not os.path.isdir(root):
        raise UserError(f"{flag}={root!r} is not a folder; pass a folder of images")
    exts = tuple(e.lower() for e in extensions)
    for rel in walk(root, skip_hidden=False, on_skip=on_skip):
        if rel.lower().endswith(exts):
            yield os.path.join(root, *rel.split("/"))


# --------------------------------------------------------------------------- reading


class UnreadableFile(Exception):
    """A file that was not read: not a regular file, too big, or an OS error (one line)."""


def read_regular_file(path: str | os.PathLike, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES
                      ) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    Opened without blocking (a FIFO would otherwise wait for a writer forever)
    and checked with ``fstat`` on the open descriptor, so what is read is what
    was checked. Raises :class:`UnreadableFile` with a one-line reason.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise UnreadableFile(f"cannot read file: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(f"{_kind(st.st_mode)}, not a regular file; not read")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnreadableFile(f"file is {st.st_size:,} bytes, over the "
                                 f"{max_bytes:,}-byte read limit")
        chunks, total = [], 0
        limit = max_bytes + 1 if max_bytes is not None else None
        while True:
            want = 1 << 20 if limit is None else min(1 << 20, limit - total)
            if want <= 0:
                break
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if max_bytes is not None and total > max_bytes:  # it grew while we read
            raise UnreadableFile(f"file grew past the {max_bytes:,}-byte read limit")
        return b"".join(chunks)
    except OSError as e:
        raise UnreadableFile(f"cannot read file: {e.strerror or e}") from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"
                ) -> Iterator[IO]:
    """``with atomic_open(path) as f: f.write(...)``: readers see the old file or the
    whole new one, never a part. A temporary file in the same folder is written,
    flushed and fsynced, then renamed over ``path``; on any error it is removed and
    ``path`` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        binary = "b" in mode
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else encoding,
                       newline=None if binary else "") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> None:
    """Writes ``data`` (text or bytes) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w", encoding=encoding) as f:
        f.write(data)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, doc: Any) -> None:
    """Writes ``doc`` as indented JSON atomically (numpy scalars and arrays allowed)."""
    with atomic_open(path) as f:
        json.dump(doc, f, indent=2, default=_json_default)
        f.write("\n")


def atomic_savez(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Writes numpy arrays as one ``.npz`` atomically (see :func:`atomic_open`)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_dir(src: str, dst: str) -> None:
    """Moves the finished folder ``src`` to ``dst``; an old ``dst`` is renamed aside first
    and removed only after the new one is in place (both must be on one filesystem)."""
    import shutil

    if not os.path.lexists(dst):
        os.replace(src, dst)
        return
    old = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(dst)),
                           prefix=f".{os.path.basename(dst)}.old-")
    os.rmdir(old)
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)  # put the old one back
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- locking


class FolderLock:
    """An exclusive lock on a folder (``fcntl.flock`` on ``<folder>/<name>``).

    The kernel drops the lock when its holder dies, even by SIGKILL, so a
    stale lock file is simply taken over. The file holds the holder's pid,
    host and start time for the message a second process gets.
    """

    def __init__(self, folder: str, name: str = ".lock", what: str = "this folder"):
        self.folder = folder
        self.path = os.path.join(folder, name)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            os.makedirs(self.folder, exist_ok=True)
            if os.path.islink(self.path) or (os.path.lexists(self.path)
                                             and not os.path.isfile(self.path)):
                raise UserError(f"cannot lock {self.path}: it is not a regular file (a "
                                "folder or a link); remove it or use another output folder")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                         | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise UserError(f"cannot lock {self.path}: {e.strerror or e}; use another output "
                            "folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_fd(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"cannot lock {self.path}: {e.strerror or e}") from None
            raise UserError(f"{self.folder} is in use by {holder or 'another process'} "
                            f"({self.what}); wait for it to finish or stop it, or use "
                            "another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on host {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_fd(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 300).decode("utf-8", "replace").strip()
    except OSError:
        return ""
