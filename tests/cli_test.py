"""Tests of the ``illustration-tl`` command line (run as real subprocesses)."""

import csv
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, module=None):
    cmd = ([sys.executable, "-m", module] if module else
           [sys.executable, "-m", "illustration_tl.cli"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_no_command_lists_commands():
    r = cli()
    assert r.returncode == 1
    assert "vocab" in r.stdout and "map-names" in r.stdout


def test_helpshort_documents_flags():
    r = cli("map-names", "--helpshort")  # absl exits 1 after printing help
    assert "--input" in r.stdout and "--[no]phrase_mode" in r.stdout


@pytest.mark.parametrize("command", ["vocab", "map-names"])
def test_bogus_flag_is_named(command):
    r = cli(command, "--bogus_flag")
    assert r.returncode != 0
    assert "bogus_flag" in r.stderr


def test_missing_input_is_one_clear_line(tmp_path):
    r = cli("map-names", f"--input={tmp_path}/nope")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--input" in r.stderr


def test_vocab_query():
    r = cli("vocab", "--query=harp")
    assert r.returncode == 0
    assert "n03495258  harp" in r.stdout and "mouth harp" in r.stdout


def test_module_entry_point_and_flagfile(tmp_path):
    for name in ["ambulance-1.png", "hot-dog.png", "nothing.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    flagfile = tmp_path / "map.flags"
    out = tmp_path / "mapping.csv"
    flagfile.write_text(f"--input={tmp_path}\n--output={out}\n--phrase_mode\n")
    r = cli(f"--flagfile={flagfile}", module="illustration_tl.commands.map_names")
    assert r.returncode == 0, r.stderr
    assert "images seen:      3" in r.stdout
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {(row["file"], row["class_name"]) for row in rows} == {
        ("ambulance-1.png", "ambulance"), ("hot-dog.png", "hotdog")}
