"""Batch ingestion for the dataset builder: every file decoded once, the PNG kept (§4).

The `illustrations` builder hands over ``(key, source)`` tasks, a path or inline bytes
(an Iconify icon's SVG); each is decoded by
:func:`illustration_tl.datasets.ingestion.load_image` and stored as
``<cache_dir>/<pixel hash>.png``, so pixel-identical sources share one file and the
writer never decodes again. Many tasks run in ``spawn`` worker processes
that end with their parent. A source that cannot be read comes back with its reason in
:attr:`Ingested.error`; nothing here raises for a bad file. Like
:mod:`~illustration_tl.datasets.ingestion`, only Pillow and NumPy: no TensorFlow.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
from typing import Callable, Iterator, Sequence

from illustration_tl.datasets import ingestion


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """How the builder normalizes every image (see
    :func:`~illustration_tl.datasets.ingestion.load_image`)."""

    background: tuple[int, int, int] | None = ingestion.DEFAULT_BACKGROUND
    max_side: int | None = 512
    max_pixels: int | None = ingestion.DEFAULT_MAX_PIXELS
    svg_size: int = ingestion.DEFAULT_SVG_SIZE
    inline_svg_size: int | None = None  # for sources given as bytes (Iconify icons)
    png_compress_level: int = 6


@dataclasses.dataclass(frozen=True)
class Ingested:
    """The outcome for one source: its hashes and stored PNG, or why it was skipped."""

    key: str
    byte_hash: str = ""
    pixel_hash: str = ""
    height: int = 0
    width: int = 0
    png_path: str = ""
    error: str | None = None


def ingest(key: str, source: str | bytes, options: IngestOptions, cache_dir: str) -> Ingested:
    """Decodes ``source`` (a path, or inline bytes such as an Iconify SVG) once.

    Writes the normalized image as ``<cache_dir>/<pixel hash>.png`` (pixel-identical
    sources share one file) and returns the hashes. Never raises for a bad
    source: the reason is returned in ``error``.
    """
    try:
        data = ingestion.read_bytes(source)
        svg_size = options.svg_size
        if isinstance(source, bytes) and options.inline_svg_size:
            svg_size = options.inline_svg_size
        array = ingestion.load_image(data, background=options.background,
                                     max_side=options.max_side,
                                     max_pixels=options.max_pixels, svg_size=svg_size)
        p_hash = ingestion.pixel_hash(array)
        png_path = os.path.join(cache_dir, p_hash + ".png")
        if not os.path.exists(png_path):
            tmp = f"{png_path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(ingestion.encode_png(array, options.png_compress_level))
            os.replace(tmp, png_path)
        return Ingested(key, ingestion.byte_hash(data), p_hash, array.shape[0], array.shape[1],
                        png_path)
    except ingestion.IngestionError as e:
        return Ingested(key, error=e.reason)
    except MemoryError:
        return Ingested(key, error="out of memory while decoding")
    except Exception as e:  # a bug or a library failure must not abort a whole build
        return Ingested(key, error=f"unexpected error: {ingestion.one_line(e)}")


def _ingest_chunk(args: tuple[list[tuple[str, str | bytes]], IngestOptions, str]
                  ) -> list[Ingested]:
    tasks, options, cache_dir = args
    return [ingest(k, s, options, cache_dir) for k, s in tasks]


def _worker_init(parent_pid: int, interval: float = 0.5) -> None:
    """Makes a decoding worker end with the process that started it.

    A SIGKILLed parent cannot stop its pool, and spawn workers would wait on
    their queue for ever. Linux's ``PR_SET_PDEATHSIG`` fires when the *thread*
    that forked the worker ends, which may be long before the parent does, so a
    daemon thread instead checks every ``interval`` seconds that the parent
    is still this process's parent, and exits at once when it is not.
    """
    import threading

    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def default_workers() -> int:
    """CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def ingest_many(tasks: Sequence[tuple[str, str | bytes]], options: IngestOptions,
                cache_dir: str, num_workers: int = 0, min_parallel: int = 64,
                progress: Callable[[str], None] | None = None,
                chunk_size: int = 32) -> Iterator[Ingested]:
    """:func:`ingest` over ``(key, source)`` tasks, in processes when there are many.

    ``num_workers`` 0 means one per CPU; fewer than ``min_parallel`` tasks run in
    this process. Results come back in task order. ``progress`` receives a line
    about every 10 seconds.
    """
    os.makedirs(cache_dir, exist_ok=True)
    workers = num_workers or default_workers()
    start, last, done, failed = time.monotonic(), time.monotonic(), 0, 0

    def report(result: Ingested) -> None:
        nonlocal last, done, failed
        done += 1
        failed += result.error is not None
        now = time.monotonic()
        if progress and (now - last > 10 or done == len(tasks)):
            last = now
            rate = done / max(now - start, 1e-9)
            progress(f"ingested {done}/{len(tasks)} images ({failed} skipped), {rate:.0f}/s")

    if workers <= 1 or len(tasks) < min_parallel:
        for key, source in tasks:
            result = ingest(key, source, options, cache_dir)
            report(result)
            yield result
        return
    chunks = [(list(tasks[i:i + chunk_size]), options, cache_dir)
              for i in range(0, len(tasks), chunk_size)]
    # spawn: never fork a process that may hold TensorFlow's threads and locks.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_init,
            initargs=(os.getpid(),)) as pool:
        for results in pool.map(_ingest_chunk, chunks):
            for result in results:
                report(result)
                yield result
