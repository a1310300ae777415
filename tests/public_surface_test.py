"""The public surface (issue 19): ``dir(illustration_tl)`` shows the API, and every
package's ``__all__`` names exactly its modules (its extension points)."""

import importlib
import os
import pkgutil

import illustration_tl

PACKAGES = ("core", "models", "datasets", "features", "evaluation", "heads", "training",
            "serving", "pipelines")


def test_tab_completion_shows_the_api():
    names = [n for n in dir(illustration_tl) if not n.startswith("_")]
    assert {"fit", "load", "Classifier", "UserError"} <= set(names)
    assert illustration_tl.UserError.__module__ == "illustration_tl.errors"
    assert sorted(illustration_tl.__all__) == sorted(
        n for n in illustration_tl.__all__ if hasattr(illustration_tl, n))


def test_every_package_lists_its_modules():
    for name in PACKAGES:
        package = importlib.import_module(f"illustration_tl.{name}")
        modules = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                         if not m.name.endswith("_test"))
        assert sorted(package.__all__) == modules, name


def test_importing_the_package_loads_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, illustration_tl; dir(illustration_tl); "
            "from illustration_tl import core, models, heads, serving, pipelines; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(illustration_tl.__file__)),
                         timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]
