"""A real browser for the operator screen's tests, benchmark and demo: Debian's headless
Chromium (`chromium`, `chromium-driver`; ./dev installs them when run as root) driven by
Selenium.

The screen's certificate is trusted by its public key alone
(`--ignore-certificate-errors-spki-list`), as a pinned certificate: no other certificate
error is ignored. Selenium is synchronous; `Browser` runs each call in a thread so a test's
event loop (the simulated home's air, for one) keeps running.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed; the message says how to install them."""


def spki_pin(cert_chain: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the first certificate in a PEM chain."""
    cert = x509.load_pem_x509_certificate(Path(cert_chain).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def version() -> str:
    import subprocess
    return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()


class Browser:
    """`async with Browser(cert_chain) as b:` one headless Chromium window."""

    def __init__(self, cert_chain: Path, *, lang: str = "en-US", size: tuple[int, int] = (1400, 1000)) -> None:
        for path in (CHROMIUM, CHROMEDRIVER):
            if not Path(path).exists() and not shutil.which(Path(path).name):
                raise BrowserMissing(f"{path} is missing: apt-get install chromium chromium-driver "
                                     "fonts-wqy-microhei (./dev does it when run as root)")
        self._pin = spki_pin(cert_chain)
        self._lang = lang
        self._size = size
        self.driver: Any = None

    async def __aenter__(self) -> Browser:
        await asyncio.to_thread(self._start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.driver is not None:
            await asyncio.to_thread(self.driver.quit)

    def _start(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--ignore-certificate-errors-spki-list={self._pin}", f"--lang={self._lang}",
                    f"--window-size={self._size[0]},{self._size[1]}"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {"intl.accept_languages": self._lang})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def text(self, css: str = "body") -> str:
        from selenium.webdriver.common.by import By
        return await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text)

    async def count(self, css: str) -> int:
        from selenium.webdriver.common.by import By
        return await self.call(lambda: len(self.driver.find_elements(By.CSS_SELECTOR, css)))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def fill(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        def fill() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(value)
        await self.call(fill)

    async def script(self, code: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, code, *args)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Poll `predicate` (run in the browser's thread) until true; TimeoutError names `what`."""
        deadline = time.monotonic() + timeout
        while not await self.call(_safely(predicate)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"browser: {what or 'condition'} not seen in {timeout} s; "
                                   f"page: {await self.text()!r}"[:2000])
            await asyncio.sleep(0.05)

    async def wait_text(self, css: str, needle: str, timeout: float = 10.0) -> None:
        from selenium.webdriver.common.by import By
        await self.wait_for(lambda: any(needle in e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)),
                            timeout, f"{needle!r} in {css}")

    async def wait_gone(self, css: str, timeout: float = 10.0) -> None:
        from selenium.webdriver.common.by import By
        await self.wait_for(lambda: not self.driver.find_elements(By.CSS_SELECTOR, css), timeout, f"{css} gone")

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.call(self.driver.save_screenshot, str(path))
        return path


def _safely(predicate: Callable[[], bool]) -> Callable[[], bool]:
    def run() -> bool:
        from selenium.common.exceptions import StaleElementReferenceException
        try:
            return bool(predicate())
        except StaleElementReferenceException:  # the panels were replaced while we looked
            return False
    return run
