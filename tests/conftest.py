"""Fixtures several test files share: a headless Chromium for the pages the server gives."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

#: The programs a browser test drives, looked up on PATH: Debian's ``chromium`` and ``chromium-driver``.
BROWSER_PROGRAMS = ("chromium", "chromedriver")


def missing_browser() -> str | None:
    """None when Chromium and its driver are on PATH, else one line saying what is missing and what to run."""
    missing = [name for name in BROWSER_PROGRAMS if shutil.which(name) is None]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found on PATH; to run the browser tests: "
        f"sudo apt-get install chromium chromium-driver (make test does it when run as root)"
    )


def in_ci() -> bool:
    """True when the ``CI`` environment variable says the tests run in continuous integration."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Chromium driven by Selenium, shared by the tests of a session.

    Without Chromium or chromedriver on PATH a test that asks for it is skipped, with the
    one line of :func:`missing_browser` as the reason; in CI (``CI=true``) it fails instead,
    so that a continuous integration run never passes without the browser tests.
    """
    reason = missing_browser()
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: browser tests are never skipped in CI)", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or a driver
    options = Options()
    options.binary_location = shutil.which("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,1400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
