"""The installed project is one namespace, ``illustration_tl``, with its presets and demo.

A wheel built from the repo is installed (without dependencies) into a fresh
target folder beside a stub top-level ``datasets`` package, the way Hugging
Face's would sit in site-packages: ``import datasets`` must still give the stub,
from a neutral folder and from the repo root (Python puts the working folder
first on ``sys.path``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), ROOT], check=True, capture_output=True, timeout=300)
    (path,) = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> str:
    """A site folder holding the wheel's files and a stub ``datasets`` package."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                    "--target", str(site), wheel], check=True, capture_output=True, timeout=300)
    stub = site / "datasets"
    stub.mkdir()
    (stub / "__init__.py").write_text("STUB = 'hugging face stand-in'\n")
    return str(site)


def _python(site: str, code: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = site
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_wheel_installs_only_the_illustration_tl_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"illustration_tl",
                                                "illustration_tl-0.1.0.dist-info"}
    assert "illustration_tl/presets/demo.flags" in names
    assert sum(n.startswith("illustration_tl/demo/curated/") for n in names) == 94
    assert any(n.startswith("illustration_tl/demo/noisy/") for n in names)


@pytest.mark.parametrize("where", ["neutral", "repo_root"])
def test_a_top_level_datasets_package_is_not_shadowed(installed, tmp_path, where):
    cwd = ROOT if where == "repo_root" else str(tmp_path)
    r = _python(installed, "import datasets, illustration_tl.datasets.illustrations as b, "
                "illustration_tl.commands as c; print(datasets.STUB); print(b.__file__); "
                "print(c.__file__)", cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    stub, builder, commands = r.stdout.splitlines()
    assert stub == "hugging face stand-in"
    # From the repo root the checkout's own illustration_tl comes first, as it should.
    home = ROOT if where == "repo_root" else installed
    assert builder.startswith(home) and commands.startswith(home)
    r = _python(installed, "import trainers", cwd)
    assert "No module named 'trainers'" in r.stderr


def test_presets_resolve_inside_the_installed_package(installed, tmp_path):
    r = _python(installed, "from illustration_tl.core import presets; "
                "print('\\n'.join(presets.flags('demo')))", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    flags = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert flags["--curated_dir"] == os.path.join(installed, "illustration_tl", "demo", "curated")
    assert os.path.isdir(flags["--curated_dir"]) and os.path.isdir(flags["--noisy_dir"])
