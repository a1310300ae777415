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


def test_version():
    from illustration_tl import __version__

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"illustration-tl {__version__}"


def test_presets_are_listed_one_line_each_and_shown_resolved():
    from illustration_tl.core import presets

    r = cli("presets")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == presets.names()
    assert "demo" in presets.names() and "paper_vgg19" in presets.names()
    r = cli("presets", "--show=demo")
    assert f"--curated_dir={presets.PACKAGE_DIR}/demo/curated" in r.stdout.splitlines()


def test_preset_flags_stand_where_the_preset_does():
    from illustration_tl.core import presets

    expanded = presets.expand(["--a=1", "--preset=svm_baseline", "--C=5", "--preset",
                               "svm_optimized"])
    assert expanded[0] == "--a=1" and "--kernel=rbf" in expanded
    assert expanded.index("--C=1") < expanded.index("--C=5") < expanded.index("--C=10")


def test_unknown_preset_is_one_line(tmp_path):
    r = cli("svm", "--preset=nope", f"--embeddings={tmp_path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--preset=nope" in r.stderr
    assert "svm_baseline" in r.stderr


def test_console_is_quiet_by_default_and_verbosity_brings_logs_back(tmp_path):
    """A command that imports TensorFlow and TFDS prints only its own line: no C++ log
    lines (oneDNN, CUDA drivers), no absl INFO/WARNING from the libraries, unless
    --verbosity asks for them."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "TQDM_DISABLE")}
    args = [sys.executable, "-m", "illustration_tl.cli", "stats",
            "--dataset=illustrations/curated", f"--data_dir={tmp_path}"]
    quiet = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 2 and quiet.stdout == ""
    assert quiet.stderr.splitlines() == [
        f"illustration-tl stats: error: --dataset='illustrations/curated' is not built in "
        f"{tmp_path}/illustrations/curated/1.0.0; build it with `illustration-tl build "
        "--config=... --manual_dir=...`"]
    loud = subprocess.run(args + ["--verbosity=0"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert loud.returncode == 2 and len(loud.stderr.splitlines()) > 1
    import illustration_tl.commands as commands

    assert commands._verbose(["prog", "--verbosity=0"]) and commands._verbose(["p", "-v", "1"])
    assert not commands._verbose(["prog", "--verbosity=-1"]) and not commands._verbose(["p"])


def test_a_build_that_writes_records_prints_no_tensorflow_lines(tmp_path):
    """TFDS imports TensorFlow lazily when it writes the records, after libraries have
    probed for it with find_spec: the start-up notices must stay silent then too."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "TQDM_DISABLE")}
    dummy = os.path.join(ROOT, "illustration_tl", "datasets", "illustrations", "dummy_data",
                         "curated_flat")
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "build",
                        "--config=curated", f"--manual_dir={dummy}",
                        f"--data_dir={tmp_path}"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    noise = [line for line in (r.stdout + r.stderr).splitlines()
             if line.startswith(("I0000", "W0000", "WARNING: All log messages", "INFO:"))
             or "oneDNN" in line or "cuda" in line.lower()]
    assert noise == []
    assert any("decoding" in line for line in r.stderr.splitlines())


def test_unknown_command_suggests_the_closest_one():
    r = cli("fitt")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "illustration-tl: error: unknown command 'fitt'; did you mean 'fit'?\n"
    r = cli("map_names")
    assert r.returncode == 2 and "did you mean 'map-names'?" in r.stderr
    r = cli("zzzz")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "the commands are vocab, map-names," in r.stderr


def test_help_command_prints_its_flags_like_helpshort():
    r = cli("help", "map-names")
    assert r.returncode == 0, r.stderr
    assert "--input" in r.stdout and "--[no]phrase_mode" in r.stdout
    assert r.stdout == cli("map-names", "--helpshort").stdout
    r = cli("help", "fitt")
    assert r.returncode == 2 and "did you mean 'fit'?" in r.stderr
    assert cli("help").returncode == 0 and "commands:" in cli("help").stdout


@pytest.mark.parametrize("flag", ["--help", "--helpshort", "--helpfull"])
def test_help_flags_exit_0(flag):
    r = cli("map-names", flag)
    assert r.returncode == 0, r.stderr
    assert "--input" in r.stdout and r.stderr == ""


@pytest.mark.parametrize("command,args,text", [
    ("fit", ["--cv_folds=abc"], "flag --cv_folds=abc: invalid literal for int()"),
    ("fit", ["--nope"], "Unknown command line flag 'nope'"),
    ("map-names", ["--phrase_mode=maybe"], "--phrase_mode"),
    ("predict", ["--format=xml"], "--format"),
    ("vocab", ["--flagfile=/nonexistent/x.flags"], "/nonexistent/x.flags"),
    ("vocab", ["positional"], "unexpected positional arguments ['positional']"),
])
def test_flag_parse_errors_are_one_line_and_exit_2(command, args, text):
    r = cli(command, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"illustration-tl {command}: error: ") and text in r.stderr


def test_flag_parse_error_is_one_line_when_run_as_a_module():
    r = cli("--top_k=many", module="illustration_tl.commands.predict")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("predict.py: error: flag --top_k=many")
