"""Hostile input (issue 12): broken, huge, strange and malicious files and folders.

Every case asserts the exact outcome: skipped with this reason (the reason
``ingestion``/``files`` give, the row of ``skipped.tsv``), or this one-line
error (exit 2, one stderr line, no traceback), or handled (decoded as an
image). The command-line cases also check that no file outside the
command's output changed. Every fixture is generated here, small, at test
time, and every test runs under a SIGALRM guard so a hang fails instead of
blocking the suite.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
from guards import time_limit
from PIL import Image

from illustration_tl.core import files
from illustration_tl.datasets import batch_ingestion, ingestion
from illustration_tl.errors import UserError
from illustration_tl.pipelines import stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 60          # per test (SIGALRM); CLI subprocesses have their own timeouts
CLI_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def _guard():
    """Fails a test that runs longer than TIMEOUT_S (a hang on a FIFO, an endless read)."""
    with time_limit(TIMEOUT_S):
        yield


# --------------------------------------------------------------------------- fixtures


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                    zlib.crc32(kind + data))


def png_header_only(width: int, height: int, colour: int = 6, depth: int = 8) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds one tiny IDAT: a bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def image_bytes(fmt: str = "PNG", size=(8, 8), seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(array).convert(mode).save(out, format=fmt)
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (6, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50,
                   loop=0)
    return out.getvalue()


SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
XXE_SVG = (f'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
           f'<svg {SVG_NS} width="10" height="10"><text y="5">&xxe;</text></svg>').encode()
LAUGHS_SVG = ('<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY lol "lol">'
              + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'
                        for i in range(1, 10))
              + f']><svg {SVG_NS}><text>&lol9;</text></svg>').encode()


def svg_image(href: str) -> bytes:
    return (f'<svg {SVG_NS} width="10" height="10"><image href="{href}" width="10" '
            'height="10"/></svg>').encode()


REASON_EMPTY = "empty file (0 bytes)"
REASON_XML_ENTITIES = ("SVG declares XML entities (<!ENTITY>); refused: external entities "
                       "read other files and nested ones expand without bound")


def external(tag: str, href: str) -> str:
    return (f"SVG <{tag}> refers to an external resource ({href}); refused: an SVG may not "
            "read other files or URLs")


# Bytes -> exact outcome of ingestion.load_image: a reason prefix, or a decoded shape.
BYTE_CASES = {
    "zero_byte": (b"", REASON_EMPTY),
    "truncated_png": (image_bytes("PNG", (64, 64))[:120], "corrupt or truncated PNG: "),
    "truncated_jpeg": (image_bytes("JPEG", (64, 64))[:300], "corrupt or truncated JPEG: "),
    "html_named_png": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
                       "not an image: unrecognized content"),
    "pixel_bomb": (png_header_only(20000, 20000, colour=2),
                   "decompression-bomb guard: 20000x20000 = 400,000,000 pixels is over "
                   "max_pixels=89,478,485; raise max_pixels if you trust it"),
    "rgba_memory_bomb": (png_header_only(9400, 9400, colour=6),
                         "decode-memory guard: 9400x9400 x 4 channel(s) x 1 byte(s) = "
                         "353,440,000 bytes to decode, over the 268,435,455-byte bound "
                         "(max_pixels=89,478,485 x 3 bytes); raise max_pixels if you trust it"),
    "sixteen_bit_memory_bomb": (png_header_only(7000, 7000, colour=2, depth=16),
                                "decode-memory guard: 7000x7000 x 3 channel(s) x 2 byte(s) = "
                                "294,000,000 bytes"),
    "xxe_svg": (XXE_SVG, REASON_XML_ENTITIES),
    "billion_laughs_svg": (LAUGHS_SVG, REASON_XML_ENTITIES),
    "svg_absolute_href": (svg_image("/etc/secret.png"), external("image", "/etc/secret.png")),
    "svg_relative_href": (svg_image("../../x.png"), external("image", "../../x.png")),
    "svg_file_url": (svg_image("file:///x.png"), external("image", "file:///x.png")),
    "svg_http_url": (svg_image("http://example.com/x.png"),
                     external("image", "http://example.com/x.png")),
    "svg_css_import": (f'<svg {SVG_NS}><style>@import url(x.css);</style></svg>'.encode(),
                       "SVG <style> imports or refers to an external resource"),
    "one_by_one": (image_bytes("PNG", (1, 1)), (1, 1, 3)),
    "animated_gif_first_frame": (animated_gif(), (4, 6, 3)),
    "svg_inline_data_image": (svg_image("data:image/png;base64,"
                                        + __import__("base64").b64encode(
                                            image_bytes("PNG", (2, 2))).decode()),
                              (512, 512, 3)),
}


@pytest.mark.parametrize("case", sorted(BYTE_CASES))
def test_hostile_bytes_are_skipped_with_the_exact_reason_or_decoded(case, tmp_path):
    data, expected = BYTE_CASES[case]
    path = tmp_path / f"{case}.png"
    path.write_bytes(data)
    start = time.monotonic()
    if isinstance(expected, tuple):
        assert ingestion.load_image(str(path)).shape == expected
    else:
        with pytest.raises(ingestion.IngestionError) as e:
            ingestion.load_image(str(path))
        assert e.value.reason.startswith(expected), e.value.reason
    assert time.monotonic() - start < 5  # header checks, not decoding


def test_memory_bound_follows_max_pixels():
    data = png_header_only(9400, 9400, colour=6)
    with pytest.raises(ingestion.IngestionError, match="decode-memory guard"):
        ingestion.open_image(data)
    # Raising max_pixels raises the memory bound too: then only the (broken) pixels fail.
    with pytest.raises(ingestion.IngestionError, match="corrupt or truncated PNG"):
        ingestion.open_image(data, max_pixels=400_000_000)


def test_gzip_svg_bomb_stops_at_the_bound(monkeypatch):
    monkeypatch.setattr(ingestion, "MAX_SVG_BYTES", 10_000)
    data = zlib.compressobj(9, zlib.DEFLATED, 31)
    svg = f"<svg {SVG_NS}>".encode() + b" " * 50_000 + b"</svg>"
    gz = data.compress(svg) + data.flush()
    with pytest.raises(ingestion.IngestionError, match="expands past 10,000 bytes"):
        ingestion.load_image(gz)


def test_fifo_named_png_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ingestion.IngestionError) as e:
        ingestion.load_image(str(fifo))
    assert e.value.reason == "a FIFO (named pipe), not a regular file; not read"


def test_symlink_to_dev_zero_is_refused_without_reading(tmp_path):
    link = tmp_path / "zero.png"
    os.symlink("/dev/zero", link)
    with pytest.raises(ingestion.IngestionError) as e:
        ingestion.load_image(str(link))
    assert e.value.reason == "a character device, not a regular file; not read"


def test_reads_stop_at_the_size_cap(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 5000)
    with pytest.raises(files.UnreadableFile, match="file is 5,000 bytes, over the "
                                                   "4,096-byte read limit"):
        files.read_regular_file(big, max_bytes=4096)
    assert files.read_regular_file(big, max_bytes=5000) == b"\0" * 5000


def test_ingest_never_raises_and_reports_the_reason(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = batch_ingestion.ingest("pipe.png", str(fifo), batch_ingestion.IngestOptions(),
                                    str(tmp_path))
    assert result.error == "a FIFO (named pipe), not a regular file; not read"


# --------------------------------------------------------------------------- folders


def _png_file(path, seed=0, size=(8, 8)):
    with open(path, "wb") as f:
        f.write(image_bytes("PNG", size, seed))


@pytest.fixture
def hostile_tree(tmp_path):
    """manual/ with two classes and every folder trick, and outside/ that must stay put."""
    outside = tmp_path / "outside"
    outside.mkdir()
    _png_file(outside / "secret.png", seed=99)
    manual = tmp_path / "manual"
    for c, cls in enumerate(["cat", "\u00e9t\u00e9 hot dog"]):
        (manual / cls).mkdir(parents=True)
        for i in range(6):
            _png_file(manual / cls / f"{i}.png", seed=10 * c + i)
    cat = os.fsencode(manual / "cat")
    _png_file(os.path.join(cat, b"caf\xe9.png"), seed=50)            # not UTF-8
    os.symlink(outside / "secret.png", manual / "cat" / "secret.png")  # file link out
    os.symlink(outside, manual / "cat" / "outside_dir")               # folder link out
    os.symlink("..", manual / "cat" / "up")                           # cycle
    os.symlink("nowhere.png", manual / "cat" / "dangling.png")
    os.symlink("loop_b.png", manual / "cat" / "loop_a.png")
    os.symlink("loop_a.png", manual / "cat" / "loop_b.png")
    os.symlink("/dev/zero", manual / "cat" / "zero.png")
    os.mkfifo(manual / "cat" / "fifo.png")
    os.symlink("0.png", manual / "cat" / "inside_link.png")          # inside: followed
    return manual, outside


EXPECTED_WALK_SKIPS = {
    "cat/dangling.png": "dangling symlink",
    "cat/fifo.png": "a FIFO (named pipe), not a regular file; not opened",
    "cat/loop_a.png": "looping symlink",
    "cat/loop_b.png": "looping symlink",
    "cat/outside_dir": "symlink to a path outside the input folder; not followed",
    "cat/secret.png": "symlink to a path outside the input folder; not followed",
    "cat/up": "folder already walked (a symlink cycle or a second link to it); not walked "
              "again",
    "cat/zero.png": "symlink to a path outside the input folder; not followed",
}


def test_walk_stays_inside_and_reports_every_left_out_entry(hostile_tree):
    manual, _ = hostile_tree
    skipped = []
    found = list(files.walk(str(manual), on_skip=skipped.append))
    names = [files.display_name(f) for f in found]
    assert names == ["cat/0.png", "cat/1.png", "cat/2.png", "cat/3.png", "cat/4.png",
                     "cat/5.png", "cat/caf\\xe9.png", "cat/inside_link.png"] + [
        f"\u00e9t\u00e9 hot dog/{i}.png" for i in range(6)]
    assert {s.rel: s.reason for s in skipped} == EXPECTED_WALK_SKIPS


def test_unreadable_subfolder_is_reported(tmp_path, monkeypatch):
    (tmp_path / "a" / "locked").mkdir(parents=True)
    _png_file(tmp_path / "a" / "ok.png")
    real = os.listdir

    def listdir(path):  # chmod 000 does not stop root, so refuse like the kernel would
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    skipped = []
    assert list(files.walk(str(tmp_path), on_skip=skipped.append)) == ["a/ok.png"]
    assert skipped == [files.Skipped("a/locked", "folder not readable: Permission denied")]


def test_display_name_escapes_bytes_and_control_characters():
    assert files.display_name(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert files.display_name("a\tb\nc.png") == "a\\x09b\\x0ac.png"
    assert files.display_name("\u00e9t\u00e9 hot dog/x.png") == "\u00e9t\u00e9 hot dog/x.png"


def test_tree_fingerprint_survives_dangling_and_looping_links_and_cycles(hostile_tree):
    manual, _ = hostile_tree
    first = stages.tree_fingerprint(str(manual))
    assert first == stages.tree_fingerprint(str(manual))
    _png_file(manual / "cat" / "new.png", seed=7)
    assert stages.tree_fingerprint(str(manual)) != first


def test_two_thousand_tiny_files_walk_and_ingest_fast(tmp_path):
    root = tmp_path / "many"
    for c in range(4):
        (root / f"class{c}").mkdir(parents=True)
    data = [image_bytes("PNG", (4, 4), seed=i) for i in range(2000)]
    for i, d in enumerate(data):
        (root / f"class{i % 4}" / f"{i:04d}.png").write_bytes(d)
    start = time.monotonic()
    found = list(files.walk(str(root)))
    tasks = [(rel, os.path.join(root, rel)) for rel in found]
    results = list(batch_ingestion.ingest_many(tasks, batch_ingestion.IngestOptions(),
                                               str(tmp_path / "cache"), num_workers=2))
    took = time.monotonic() - start
    assert len(found) == 2000 and not [r for r in results if r.error]
    assert took < 45, f"2,000 tiny files took {took:.1f} s"


# --------------------------------------------------------------------------- processes


def test_spawn_workers_end_with_a_killed_parent(tmp_path):
    script = textwrap.dedent("""
        import concurrent.futures, multiprocessing, os, sys, time
        from illustration_tl.datasets import batch_ingestion
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(
            2, mp_context=ctx, initializer=batch_ingestion._worker_init, initargs=(os.getpid(),))
        pool.submit(os.getpid).result()
        print(" ".join(map(str, sorted(pool._processes))), flush=True)
        time.sleep(600)
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) >= 1
        assert all(_alive(p) for p in workers)
        parent.kill()  # SIGKILL: the pool gets no chance to shut down
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "spawn workers outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from illustration_tl.pipelines import stages
    if len(sys.argv) > 2:  # a run of that command: its manifest, then its lock
        stages.open_output(sys.argv[1], sys.argv[2], {}, "--output")
    else:
        stages.lock_output(sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)
""")


def test_output_lock_refuses_a_second_holder_and_survives_sigkill(tmp_path):
    out = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=ROOT)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, out], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError) as e:
            stages.lock_output(out)
        message = str(e.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert message.startswith(f"{out} is in use by pid {holder.pid}")
        holder.kill()
        holder.wait(10)
        lock = stages.lock_output(out)  # the kernel released the dead holder's lock
        with open(os.path.join(out, stages.LOCK_FILE)) as f:
            assert f.read().startswith(f"pid {os.getpid()} ")
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_skipped_stage_keeps_the_time_of_the_run_that_made_it(tmp_path):
    first = stages.Stages(str(tmp_path), log=lambda m: None)
    first.run("slow", {"a": 1}, lambda out: time.sleep(0.2))
    assert first.timings["slow"] >= 0.2
    again = stages.Stages(str(tmp_path), log=lambda m: None)
    again.run("slow", {"a": 1}, lambda out: pytest.fail("an up-to-date stage ran"))
    assert again.skipped == ["slow"]
    assert again.timings["slow"] == round(first.timings["slow"], 2)


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    files.atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with files.atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.json"]  # the temporary file is gone
    files.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


# --------------------------------------------------------------------------- embeddings


def _shard(path, x, y=None, n=None):
    y = np.zeros(len(x), np.int64) if y is None else y
    n = np.array([f"f{i}" for i in range(len(x))]) if n is None else n
    with open(path, "wb") as f:
        np.savez(f, embeddings=x, labels=y, file_names=n)


def _split(tmp_path, x):
    d = tmp_path / "emb" / "train"
    d.mkdir(parents=True)
    _shard(d / "shard-00000.npz", x)
    (d / "metadata.json").write_text(json.dumps({"class_names": ["a"], "num_examples": len(x),
                                                 "dim": x.shape[1], "num_shards": 1}))
    return d


def test_truncated_shard_is_one_line_naming_it(tmp_path):
    from illustration_tl.features import embeddings

    d = _split(tmp_path, np.ones((4, 3), np.float32))
    shard = d / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(UserError) as e:
        embeddings.load(str(d))
    assert str(e.value).startswith(f"embeddings shard {shard} is unreadable (truncated or "
                                   "corrupt: BadZipFile")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad,kind", [(np.nan, "2 NaN"), (np.inf, "2 infinite (Inf)")])
def test_nan_and_inf_embeddings_are_named_with_their_kind_and_count(tmp_path, bad, kind):
    from illustration_tl.features import embeddings

    x = np.ones((4, 3), np.float32)
    x[1, 0] = x[2, 2] = bad
    d = _split(tmp_path, x)
    with pytest.raises(UserError) as e:
        embeddings.load(str(d))
    assert str(e.value) == (f"embeddings shard {d / 'shard-00000.npz'} holds {kind} value(s) "
                            "in 2 of 4 rows; the model diverged or the file was altered: "
                            "re-run `embed`")


def test_embed_overwrite_never_deletes_files_it_did_not_write(tmp_path):
    from illustration_tl.features import embeddings

    d = _split(tmp_path, np.ones((4, 3), np.float32))
    (d / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files `embed` did not write \(notes.txt\)"):
        embeddings.check_replaceable(str(d))
    (d / "notes.txt").unlink()
    embeddings.check_replaceable(str(d))  # only shards + metadata: replaceable
    with pytest.raises(UserError, match=r"holds files `embed` did not write \(train\)"):
        embeddings.check_replaceable(str(tmp_path / "emb"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no metadata.json, so `embed` did not write it"):
        embeddings.check_replaceable(str(tmp_path / "empty"))


# --------------------------------------------------------------------------- models


def test_model_refused_by_safe_mode_is_one_line_naming_the_file(tmp_path):
    import keras

    from illustration_tl.models import layer_surgery

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    model.save(tmp_path / layer_surgery.MODEL_FILE)
    (tmp_path / layer_surgery.CONFIG_FILE).write_text("{}")
    with pytest.raises(UserError) as e:
        layer_surgery.load_trained(str(tmp_path))
    message = str(e.value)
    assert message.startswith(f"{tmp_path / layer_surgery.MODEL_FILE} could not be loaded "
                              "(it holds code that Keras's safe mode will not run")
    assert "\n" not in message


# --------------------------------------------------------------------------- build


def snapshot(root: str, exclude: str) -> dict:
    """path -> (type, size, mtime, sha256) of every entry under root but ``exclude``;
    links and FIFOs are never followed or opened."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.abspath(dirpath).startswith(os.path.abspath(exclude)):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.abspath(p) == os.path.abspath(exclude):
                continue
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[p] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return out


def _cli(*args, timeout=CLI_TIMEOUT_S):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


_TF_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ")


def _one_line_error(proc, prog: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # TensorFlow's C++ start-up notices (printed by `reproduce` even with
    # TF_CPP_MIN_LOG_LEVEL=3, a known issue outside this suite) are not error lines.
    # Progress lines (the builder's "decoding N files") may come first, on stderr as
    # is usual; the error itself is one line, the last.
    lines = [line for line in proc.stderr.strip().splitlines()
             if not line.startswith(_TF_NOISE)]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert errors[0].startswith(f"{prog}: error: ")
    return errors[0][len(f"{prog}: error: "):]


def _read_tsv(path) -> dict:
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0] == ["file", "reason"] and all(len(r) == 2 for r in rows)
    return dict(rows[1:])


@pytest.mark.slow
def test_build_cli_on_a_hostile_tree_then_overwrite_that_fails_keeps_the_dataset(
        hostile_tree, tmp_path):
    manual, _ = hostile_tree
    cat = os.fsencode(manual / "cat")
    for name, (data, _) in BYTE_CASES.items():
        with open(os.path.join(cat, f"h_{name}.png".encode()), "wb") as f:
            f.write(data)
    data_dir = tmp_path / "tfds"
    before = snapshot(str(tmp_path), exclude=str(data_dir))
    # A first build, then --overwrite over it (the old one is replaced only when complete).
    for extra in ([], ["--overwrite"]):
        proc = _cli("illustration_tl.commands.build", "--config=curated",
                    f"--manual_dir={manual}", f"--data_dir={data_dir}", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    assert snapshot(str(tmp_path), exclude=str(data_dir)) == before
    version_dir = data_dir / "illustrations" / "curated" / "1.0.0"
    skipped = _read_tsv(version_dir / "skipped.tsv")
    expected = dict(EXPECTED_WALK_SKIPS)
    for name, (_, outcome) in BYTE_CASES.items():
        if not isinstance(outcome, tuple):
            expected[f"cat/h_{name}.png"] = outcome
    assert set(skipped) == set(expected)
    for name, reason in expected.items():
        assert skipped[name].startswith(reason), (name, skipped[name])
    import tensorflow_datasets as tfds

    builder = tfds.builder("illustrations/curated", data_dir=str(data_dir))
    assert builder.info.features["label"].names == ["cat", "\u00e9t\u00e9 hot dog"]
    names = {ex["file_name"].decode() for s in ("train", "validation", "test")
             for ex in tfds.as_numpy(builder.as_dataset(split=s))}
    handled = {f"cat/h_{n}.png" for n, (_, o) in BYTE_CASES.items() if isinstance(o, tuple)}
    assert names == ({f"cat/{i}.png" for i in range(6)} | {"cat/caf\\xe9.png",
                     "cat/inside_link.png"} | {f"\u00e9t\u00e9 hot dog/{i}.png"
                                               for i in range(6)} | handled)
    assert not [p for p in os.listdir(data_dir) if p.startswith(".illustrations-rebuild")]

    # --overwrite from a one-class folder: refused in one line, old dataset untouched.
    one = tmp_path / "one"
    (one / "cat").mkdir(parents=True)
    for i in range(5):
        _png_file(one / "cat" / f"{i}.png", seed=i)
    kept = snapshot(str(data_dir), exclude=str(tmp_path / "nothing"))
    proc = _cli("illustration_tl.commands.build", "--config=curated", f"--manual_dir={one}",
                f"--data_dir={data_dir}", "--overwrite")
    assert _one_line_error(proc, "build.py") == (
        f"only one class ('cat') has usable images under {str(one)!r}: a classifier needs "
        "at least 2 classes; add images of another class folder")
    assert snapshot(str(data_dir), exclude=str(tmp_path / "nothing")) == kept


def test_empty_input_folder_is_refused_in_one_line(tmp_path):
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden").write_text("x")
    with pytest.raises(UserError) as e:
        b.build("curated", str(tmp_path / "empty"), str(tmp_path / "tfds"))
    assert str(e.value) == (f"--manual_dir={str(tmp_path / 'empty')!r} holds no image files; "
                            "point it at your images (curated: one folder per class)")
    assert not (tmp_path / "tfds").exists()


@pytest.mark.slow
def test_second_reproduce_on_a_locked_folder_exits_2_at_once(tmp_path):
    out = tmp_path / "run"
    for d in ("curated", "noisy"):
        (tmp_path / d).mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out), "reproduce"],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(str(tmp_path), exclude=str(tmp_path / "nothing"))
        start = time.monotonic()
        proc = _cli("illustration_tl.commands.reproduce", f"--output_dir={out}",
                    f"--curated_dir={tmp_path / 'curated'}", f"--noisy_dir={tmp_path / 'noisy'}",
                    "--weights=none")
        message = _one_line_error(proc, "reproduce.py")
        assert message.startswith(f"{out} is in use by pid {holder.pid} on host "
                                  f"{socket.gethostname()}")
        assert time.monotonic() - start < 60  # no stage ran
        assert snapshot(str(tmp_path), exclude=str(tmp_path / "nothing")) == before
    finally:
        holder.kill()
        holder.wait(10)
    stages.lock_output(str(out)).release()  # after SIGKILL the folder is free again
