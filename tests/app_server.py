"""`python app.py` in a subprocess on a free local port, for the tests that call it over HTTP, and
the headless browser the browser tests drive it with."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots of the browser tests (gitignored)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(work: Path, *args: str, start_timeout_s: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app's URL and process; uploads, copies and Gradio's cache go under `work`."""
    port = free_port()
    # every temporary file of the app under `work` (pytest's own temp folder, pruned by pytest)
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(work / "gradio"),
               TMPDIR=str(work / "tmp"))
    with open(work / "app.log", "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu",
                                    "--workdir", str(work / "explorer"), *args],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the app did not start:\n" + (work / "app.log").read_text()[-3000:])
            time.sleep(0.5)
        try:
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


# -- the browser: Debian's chromium and chromium-driver through Selenium with the system driver -----
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def headless_chromium() -> Iterator:
    """A headless Chromium WebDriver, quit afterwards (the test skips when Debian's chromium and
    chromium-driver are absent): a test module's `browser` fixture yields from it."""
    if not chromium() or not CHROMEDRIVER.is_file():
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


class Page:
    """What the browser tests ask of a page: elements by CSS, images that have loaded, tabs,
    the text of an element, and screenshots under tests/artifacts/."""

    def __init__(self, driver, timeout_s: float = 90):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, timeout_s, poll_frequency=0.3)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def css(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def loaded_images(self, selector: str) -> list:
        return [i for i in self.css(selector) if int(i.get_attribute("naturalWidth") or 0) > 0]

    def open_tab(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//button[@role='tab' and contains(., '{name}')]").click()

    def text(self, elem_id: str) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, elem_id).text

    def shot(self, name: str, scroll_to: str | None = None) -> Path:
        """A screenshot of the page (scrolled to an element first) as tests/artifacts/NAME.png."""
        if scroll_to:
            self.driver.execute_script(f"document.getElementById('{scroll_to}').scrollIntoView()")
            time.sleep(0.5)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path
