"""Headless Chromium for the page tests (issue 22's ``report.html``): Debian's
``chromium`` driven from its command line (screenshot, DOM), or through the system
``chromedriver`` with Selenium (layout measured in the page). Nothing is downloaded;
``.ci/run`` installs both (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
from typing import Iterator

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
TIMEOUT_S = 120
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; "
    ".ci/run installs it)")
NEEDS_CHROMEDRIVER = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and "
    "chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)")


def flags(profile: pathlib.Path) -> list[str]:
    """Chromium's flags for one headless run with its own profile folder."""
    return [*FLAGS, f"--user-data-dir={profile}"]


def file_url(path: str) -> str:
    return "file://" + os.path.abspath(path)


def screenshot(path: str, shot: pathlib.Path, profile: pathlib.Path, width: int,
               height: int) -> np.ndarray:
    """Chromium's screenshot of the page at ``path`` in a ``width`` x ``height`` window,
    as a grey-level array."""
    from PIL import Image

    r = subprocess.run([CHROMIUM, *flags(profile), f"--screenshot={shot}",
                        f"--window-size={width},{height}", file_url(path)],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert shot.is_file(), r.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("L"), np.float64)


def dump_dom(path: str, profile: pathlib.Path) -> str:
    """The DOM Chromium builds from the page at ``path``."""
    return subprocess.run([CHROMIUM, *flags(profile), "--dump-dom", file_url(path)],
                          capture_output=True, text=True, timeout=TIMEOUT_S).stdout


@contextlib.contextmanager
def driver(profile: pathlib.Path, width: int, height: int) -> Iterator:
    """A Selenium WebDriver on headless Chromium, through the system chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in flags(profile) + ["--disable-dev-shm-usage",
                                  f"--window-size={width},{height}"]:
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        d.set_page_load_timeout(TIMEOUT_S)
        yield d
    finally:
        d.quit()
