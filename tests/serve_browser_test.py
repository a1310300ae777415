"""``serve``'s page in headless Chromium: pick an image, drop an image, read the top 5.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the
``selenium`` package (the ``test`` extra); Selenium drives the system chromedriver, so
no browser is downloaded. Screenshots go to the test's temporary folder
(``ILLUSTRATION_TL_SCREENSHOTS=DIR`` keeps a copy).
"""

from __future__ import annotations

import base64
import os
import shutil

import pytest
from serve_helpers import CLASSES, Running, clipart_files, tiny_export

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=900,900")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    r = Running(tiny_export(str(tmp_path_factory.mktemp("export") / "model")))
    yield r
    r.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), (
            f"{path} missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def top5(driver, timeout: float = 60) -> list[tuple[str, float, str]]:
    """(class, score, bar width) of each row the page shows, once it shows them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#results li")
        or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#results li")
    return [(li.get_attribute("data-class"), float(li.get_attribute("data-score")),
             li.find_element(By.CLASS_NAME, "bar").value_of_css_property("width"))
            for li in rows]


def screenshot(driver, tmp_path, name: str) -> str:
    path = str(tmp_path / name)
    driver.save_screenshot(path)
    keep = os.environ.get("ILLUSTRATION_TL_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(path, keep)
    return path


def expected_ranking(running, path: str) -> list[tuple[str, float]]:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    status, body = running.predict({"instances": [{"b64": data}]})
    assert status == 200
    scores = body["predictions"][0]["all_scores"]
    return sorted(zip(CLASSES, scores), key=lambda x: -x[1])


def test_pick_a_file_and_read_the_top_classes(browser, running, tmp_path):
    from selenium.webdriver.common.by import By

    image = clipart_files(1)[0]
    browser.get(f"http://127.0.0.1:{running.port}/")
    assert browser.title == "illustration-tl: model"
    browser.find_element(By.ID, "file").send_keys(image)
    rows = top5(browser)
    want = expected_ranking(running, image)
    assert [r[0] for r in rows] == [n for n, _ in want]  # 3 classes: all of them, ranked
    for (_, score, _), (_, expected) in zip(rows, want):
        assert score == pytest.approx(expected, rel=1e-5)
    widths = [float(w.removesuffix("px")) for _, _, w in rows]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert os.path.basename(image) in browser.find_element(By.ID, "status").text
    shot = screenshot(browser, tmp_path, "serve_page_pick.png")
    assert os.path.getsize(shot) > 1000


def test_drop_an_image_on_the_page(browser, running, tmp_path):
    """A real drop event carrying the file (a DataTransfer, as a person's drag makes)."""
    image = clipart_files(4)[3]
    with open(image, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    browser.get(f"http://127.0.0.1:{running.port}/")
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], arguments[1], {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    """, data, os.path.basename(image))
    rows = top5(browser)
    assert [r[0] for r in rows] == [n for n, _ in expected_ranking(running, image)]
    screenshot(browser, tmp_path, "serve_page_drop.png")


def test_a_file_that_is_not_an_image_shows_the_servers_error(browser, running, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    browser.get(f"http://127.0.0.1:{running.port}/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    assert top5(browser) == []
    status = browser.find_element(By.ID, "status")
    assert "error" in status.get_attribute("class")
    assert status.text.startswith("notes.png: instance 0: not an image")
