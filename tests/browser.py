"""A real headless Chromium for the UI tests, driven by Playwright for Python.

The browser is Debian's chromium (`/usr/bin/chromium`; `.ci/run` installs it), handed to Playwright
through `executable_path`: Playwright's own browser builds are never downloaded (`playwright
install` is not part of the set-up, and fails without internet). Without Chromium the tests skip,
with the reason.

`open_browser(executable)` gives one page (`UiPage`): `goto`, `text` (the visible text with that of
same-origin frames, white space collapsed), `wait_for_text` (Playwright polls the page until every
needle shows), `screenshot`, and the Playwright `page` itself for filling forms and the like.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "ui-screenshots"
WIDTH, HEIGHT = 1440, 1000
PAGE_TIMEOUT = 25.0

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    f"--window-size={WIDTH},{HEIGHT}",
]
"""Headless (Playwright's `headless=True`), no sandbox (root in CI), and nothing that reaches out
to the internet on its own (background networking, component updates, sync)."""


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    for candidate in ([explicit] if explicit else []) + list(CHROMIUM_CANDIDATES):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


_PAGE_TEXT = """() => {
  const parts = [document.body ? document.body.innerText : ""];
  for (const frame of document.querySelectorAll("iframe")) {
    try {
      if (frame.contentDocument && frame.contentDocument.body) parts.push(frame.contentDocument.body.innerText);
    } catch (e) { /* a cross-origin frame: not ours to read */ }
  }
  return parts.join("\\n").split(/\\s+/).filter(Boolean).join(" ");
}"""
"""The visible text with that of same-origin frames (the UI renders markdown in one), its white
space collapsed to single spaces (the UI splits "1 Workflow" over two elements)."""

_HAS_ALL = f"needles => {{ const text = ({_PAGE_TEXT})(); return needles.every(n => text.includes(n)); }}"


class UiPage:
    """One browser page, as the UI tests read it."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def goto(self, url: str) -> None:
        await self.page.goto(url, wait_until="domcontentloaded")

    async def text(self) -> str:
        return await self.page.evaluate(_PAGE_TEXT) or ""

    async def wait_for_text(self, *needles: str, timeout: float = PAGE_TIMEOUT) -> str:
        """The page's visible text once it contains every needle (the SPA renders asynchronously)."""
        try:
            await self.page.wait_for_function(_HAS_ALL, arg=list(needles), timeout=timeout * 1000, polling=300)
        except PlaywrightError:  # a timeout, or the page navigated away meanwhile
            text = await self.text()
            missing = [n for n in needles if n not in text]
            raise AssertionError(f"the page never showed {missing}; it shows:\n{text[:3000]}") from None
        await asyncio.sleep(0.5)  # let the last requests settle before a screenshot
        return await self.text()

    async def screenshot(self, path: Path) -> Path:
        await self.page.screenshot(path=str(path), type="png")
        return path


@asynccontextmanager
async def open_browser(executable: str) -> AsyncIterator[UiPage]:
    """Debian's Chromium, headless, with one page of WIDTH x HEIGHT; closed on the way out."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        try:
            context = await browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            yield UiPage(await context.new_page())
        finally:
            await browser.close()


def keep(shot: Path) -> Path:
    """A copy of the screenshot under var/ui-screenshots/, for humans."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / shot.name
    shutil.copyfile(shot, kept)
    return kept


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
