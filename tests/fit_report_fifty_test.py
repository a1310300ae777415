"""``fit``'s report.html at 50 classes (issue 22 acceptance: complete on a 50-class real
run, in a browser, and under 5 MB): a tiny real ``fit`` on 50 openclipart classes
(``tests/fixtures/openclipart_fifty``, random weights at 32 px), its page measured, and
the page rendered by headless Chromium.

"Readable" for the confusion matrix is measured in its pixels: the axes box is found by
its spines, every one of the 50 rows and columns has a label of its own (ink beside it,
a blank line between neighbours, none cut at the image's edge), and a class row is at
least :data:`MIN_ROW_PX` pixels high in the PNG and :data:`MIN_SHOWN_ROW_PX` as Chromium
shows it in a :data:`WINDOW`-wide window.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re

import numpy as np
import pytest
from browser_helpers import NEEDS_CHROMEDRIVER, NEEDS_CHROMIUM, driver, dump_dom, file_url
from browser_helpers import screenshot as chromium_screenshot
from fit_helpers import FIFTY, class_folders, tiny_fit_run

from illustration_tl.evaluation import fit_run, html_report

pytestmark = pytest.mark.slow

CLASSES = class_folders(FIFTY)
MAX_PAGE_BYTES = 5_000_000     # the acceptance line
MIN_ROW_PX = 14                # a confusion-matrix class row in the figure's PNG
MIN_SHOWN_ROW_PX = 11          # and as shown in the page
WINDOW = (1200, 900)           # a laptop browser window, CSS pixels
INK = 128                      # grey level below which a pixel is ink
SPINE_PX = 3                   # an axes spine is thinner than this
TICK_PX = 8                    # tick marks beside the axes, not labels
BLANK_STD = 20                 # a section's screenshot with less grey spread is blank


@pytest.fixture(scope="module")
def fifty_run(tmp_path_factory):
    _, out = tiny_fit_run(tmp_path_factory.mktemp("fifty"), CLASSES, FIFTY)
    logged: list[str] = []
    path = html_report.write_fit_report(str(out), log=logged.append)
    return out, path, logged


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start:page.index("</section>", start)]


def _confusion_png(page: str) -> np.ndarray:
    from PIL import Image

    data = re.search(r'src="data:image/png;base64,([^"]+)"', _section(page, "confusion"))
    assert data, "no inline PNG in the confusion section"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.group(1)))).convert("L"))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in a 1-d mask."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    cuts = np.flatnonzero(np.diff(idx) > 1)
    return list(zip(idx[np.r_[0, cuts + 1]], idx[np.r_[cuts, len(idx) - 1]]))


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(first, last) of the longest run of True in a 1-d mask; (0, -1) when none."""
    return max(_runs(mask), key=lambda r: r[1] - r[0], default=(0, -1))


def axes_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel rows/columns of the widest axes' spines: the first
    and last of the longest unbroken horizontal ink lines (thin ones: text is not), and
    where the top one starts and ends."""
    ink = gray < INK
    longest = np.array([b - a + 1 for a, b in map(_longest_run, ink)])
    lines = [r for r in _runs(longest >= 0.8 * longest.max()) if r[1] - r[0] < SPINE_PX]
    assert len(lines) >= 2, "no axes spines found"
    top, bottom = lines[0][1], lines[-1][0]
    left, right = _longest_run(ink[top])
    return top, bottom, left, right


def _bands(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    """The middle 70% of each of ``n`` equal cells between ``lo`` and ``hi``."""
    pitch = (hi - lo) / n
    return [(int(lo + (i + 0.15) * pitch), int(np.ceil(lo + (i + 0.85) * pitch)))
            for i in range(n)]


def _gaps(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    """Half a cell around each boundary between neighbouring cells."""
    pitch = (hi - lo) / n
    return [(int(lo + (i - 0.25) * pitch), int(np.ceil(lo + (i + 0.25) * pitch)))
            for i in range(1, n)]


def label_problems(gray: np.ndarray, n: int) -> list[str]:
    """What keeps the ``n`` x ``n`` matrix's class labels from being read (empty: none)."""
    top, bottom, left, right = axes_box(gray)
    ink = gray < INK
    rows = ink[:, :left - TICK_PX]                           # y labels, left of the axes
    first = bottom + TICK_PX
    cols = ink[first:first + 3 * TICK_PX]                    # x labels' first characters
    problems = [f"row {i} has no label" for i, (a, b) in enumerate(_bands(top, bottom, n))
                if not rows[a:b].any()]
    problems += [f"column {j} has no label" for j, (a, b) in
                 enumerate(_bands(left, right, n)) if not cols[:, a:b].any()]
    problems += [f"labels of rows {i} and {i + 1} touch" for i, (a, b) in
                 enumerate(_gaps(top, bottom, n)) if rows[a:b].any(axis=1).all()]
    problems += [f"labels of columns {j} and {j + 1} touch" for j, (a, b) in
                 enumerate(_gaps(left, right, n)) if cols[:, a:b].any(axis=0).all()]
    if ink[:, :2].any() or ink[-2:].any():
        problems.append("a label is cut at the image's left or bottom edge")
    return problems


def test_axes_box_and_labels_of_a_drawn_matrix(tmp_path):
    """The measurement itself, on matrices drawn here: labels found where drawn, and
    a missing or overlapping label reported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    def draw(names: list[str], fontsize: float, rates: np.ndarray | None = None
             ) -> np.ndarray:
        fig, ax = plt.subplots(figsize=(6, 6))
        rates = np.eye(len(names)) if rates is None else rates
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(len(names)), names, fontsize=fontsize)
        fig.subplots_adjust(left=0.3, bottom=0.3, right=0.95, top=0.95)
        fig.savefig(tmp_path / "m.png", dpi=100)
        plt.close(fig)
        return np.asarray(Image.open(tmp_path / "m.png").convert("L"))

    gray = draw([f"class_{i}" for i in range(10)], 8)
    top, bottom, left, right = axes_box(gray)
    assert (top, bottom, left, right) == pytest.approx((30, 420, 180, 570), abs=3)
    assert label_problems(gray, 10) == []
    one_column = np.zeros((10, 10))
    one_column[:, 0] = 1                      # every image predicted as class 0
    assert axes_box(draw([f"class_{i}" for i in range(10)], 8, one_column)) == (
        top, bottom, left, right)
    names = [f"class_{i}" for i in range(10)]
    names[4] = ""
    assert label_problems(draw(names, 8), 10) == ["row 4 has no label", "column 4 has no label"]
    crowded = label_problems(draw([f"class_{i}" for i in range(40)], 12), 40)
    assert "labels of rows 0 and 1 touch" in crowded
    assert "labels of columns 0 and 1 touch" in crowded
    cut = label_problems(draw([f"a_long_class_name_{i}" for i in range(10)], 12), 10)
    assert cut == ["a label is cut at the image's left or bottom edge"]


def test_fifty_class_page_is_complete_and_small(fifty_run):
    out, path, logged = fifty_run
    assert os.path.getsize(path) < MAX_PAGE_BYTES
    assert logged[-1] == f"report: {path}"
    run = fit_run.load(str(out))
    assert list(run.result.class_names) == list(CLASSES)
    # the fixture's promise: exactly one test image per class, so every row is scored
    assert np.bincount(run.result.labels, minlength=50).tolist() == [1] * 50
    page = open(path, encoding="utf-8").read()
    for sid in html_report.SECTIONS:
        assert f'<section id="{sid}">' in page
    per_class = _section(page, "per-class")
    assert all(f"<td>{html.escape(c)}" in per_class for c in CLASSES)
    gray = _confusion_png(page)
    top, bottom, _, _ = axes_box(gray)
    assert (bottom - top) / len(CLASSES) >= MIN_ROW_PX
    assert label_problems(gray, len(CLASSES)) == []


@NEEDS_CHROMIUM
def test_chromium_renders_every_section_of_the_fifty_class_page(fifty_run, tmp_path):
    _, path, _ = fifty_run
    pixels = chromium_screenshot(path, tmp_path / "shot.png", tmp_path / "profile", *WINDOW)
    assert pixels.shape == WINDOW[::-1] and pixels.std() > BLANK_STD
    dom = dump_dom(path, tmp_path / "profile")
    for sid in html_report.SECTIONS:
        assert f'<section id="{sid}">' in dom
    assert all(html.escape(c) in dom for c in CLASSES)


@NEEDS_CHROMEDRIVER
def test_every_section_shows_and_the_matrix_rows_are_tall_enough(fifty_run, tmp_path):
    """The whole page laid out by Chromium at :data:`WINDOW` width: each section has a
    non-blank area of its own in a full-page screenshot, and the confusion matrix is
    shown at :data:`MIN_SHOWN_ROW_PX` per class row or more."""
    from PIL import Image

    _, path, _ = fifty_run
    gray = _confusion_png(open(path, encoding="utf-8").read())
    top, bottom, _, _ = axes_box(gray)
    with driver(tmp_path / "profile", *WINDOW) as d:
        d.get(file_url(path))
        for _ in range(3):   # a full-height viewport loses the scrollbar and may reflow
            width, height = d.execute_script(
                "return [document.documentElement.clientWidth,"
                " document.documentElement.scrollHeight]")
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            if d.execute_script("return document.documentElement.scrollHeight") == height:
                break
        boxes = d.execute_script(
            "return [...document.querySelectorAll('section')].map(s => {"
            " const r = s.getBoundingClientRect();"
            " return [s.id, r.left, r.top + window.scrollY, r.width, r.height]; })")
        img = d.execute_script(
            "const i = document.querySelector('#confusion img');"
            " return [i.naturalHeight, i.getBoundingClientRect().height];")
        d.save_screenshot(str(tmp_path / "page.png"))
    assert [b[0] for b in boxes] == list(html_report.SECTIONS)
    page = np.asarray(Image.open(tmp_path / "page.png").convert("L"), np.float64)
    assert page.shape == (height, width)
    for sid, x, y, w, h in boxes:
        crop = page[int(y):int(y + h), int(x):int(x + w)]
        assert h > 0 and crop.size and crop.std() > BLANK_STD, sid
    natural, shown = img
    assert natural == gray.shape[0]
    assert (bottom - top) / len(CLASSES) * shown / natural >= MIN_SHOWN_ROW_PX
