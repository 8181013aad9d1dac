"""Drive Debian's Chromium through its own chromedriver, headless, for the /ui page's tests.

Selenium Manager never runs: an explicit driver path makes Selenium skip it, so nothing is
downloaded. A missing browser fails the tests (scripts/test.sh installs it), never skips them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from conftest import LIMIT_S

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "logs" / "ui"  # git-ignored; CI keeps the tree
DOCS = ROOT / "docs"
T = TypeVar("T")

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root in a container Chromium refuses to start without it
    "--disable-dev-shm-usage",  # containers have a small /dev/shm
    "--window-size=1280,900",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--proxy-server=http://127.0.0.1:9",  # loopback bypasses it; anything else goes nowhere
    "--force-prefers-reduced-motion",
)


def chrome(downloads: Path) -> WebDriver:
    """A headless Chromium that keeps its console log for `console_errors` and saves downloads there."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("Debian's chromium and chromium-driver are not installed: scripts/test.sh installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    downloads.mkdir(parents=True, exist_ok=True)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def console_errors(driver: WebDriver, allowed: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """SEVERE console entries (JS errors, CSP refusals, failed loads) the test did not expect.

    Reading the log drains it: each test reads it once, at its end.
    """
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return [e for e in entries if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T | bool | None], what: str) -> T:
    """Wait on a state of the page; the limit only catches a hang, never a slow machine."""
    # The page redraws while a test looks: an element replaced under it is looked up again.
    wait = WebDriverWait(driver, LIMIT_S, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))
    result: T = wait.until(condition, message=what)
    return result


def element(driver: WebDriver, css: str) -> WebElement:
    """The first element matching ``css`` once it is on the page and shown."""
    from selenium.webdriver.common.by import By

    def shown(d: WebDriver) -> WebElement | None:
        found = d.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found and found[0].is_displayed() else None

    return wait_for(driver, shown, f"{css} shown")


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the viewport under logs/ui/; with UPDATE_SCREENSHOTS=1 also as the README's docs/ui-<name>."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    docs_name = {"gallery": "ui-gallery.png", "job-running": "ui-job.png"}.get(name)
    if docs_name and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        (DOCS / docs_name).write_bytes(path.read_bytes())
    return path
