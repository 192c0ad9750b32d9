"""The upload page of `i2i serve`, driven in headless Chromium with Selenium: upload an image, see the result.

Needs the ``selenium`` package and a Chromium with its driver (Debian: chromium, chromium-driver);
skipped with the reason when either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from i2i.registry import generators
from i2i.testing import build, generator_meta
from i2i_export.exporter import export_onnx
from i2i_export.server import create_app, serve_in_thread

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="headless Chromium and chromedriver are not installed (apt install chromium chromium-driver)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is an environment problem
        pytest.skip(f"headless Chromium could not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = generators().get("srvgg_compact")  # x4: the result is visibly 4x the input
    model = export_onnx(build(spec).eval(), generator_meta(spec), tmp_path_factory.mktemp("browser") / "sr.onnx")
    with serve_in_thread(create_app(model, device="cpu"), port=0) as base:
        yield base


def test_upload_and_see_the_result(browser, url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "input.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(image)
    browser.get(url + "/")
    wait = WebDriverWait(browser, 60)
    # the page fetched /v1/model and shows what it serves
    wait.until(lambda d: "srvgg_compact" in d.find_element(By.ID, "model").text)
    assert browser.find_element(By.ID, "mask-label").get_attribute("hidden") is not None  # no mask for this model
    browser.find_element(By.ID, "image").send_keys(str(image))
    wait.until(lambda d: d.execute_script("return document.getElementById('input-preview').naturalWidth") == 40)
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: d.execute_script("const o = document.getElementById('output'); return o.complete && o.naturalWidth > 0"))
    size = browser.execute_script("const o = document.getElementById('output'); return [o.naturalWidth, o.naturalHeight]")
    assert size == [160, 120]  # the x4 result, side by side with the 40x30 input
    assert browser.find_element(By.ID, "status").text.startswith("done in")
    assert browser.find_element(By.ID, "download").is_displayed()


def test_page_shows_server_errors(browser, url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    browser.get(url + "/")
    browser.find_element(By.ID, "image").send_keys(str(bad))
    browser.find_element(By.ID, "go").click()
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 60).until(lambda d: "HTTP" in status.text)
    assert status.text.startswith("HTTP 422:") and "error" in status.get_attribute("class")
