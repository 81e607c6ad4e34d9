"""What an operator sees: the Temporal Web UI of the dev server, in a real headless Chromium.

The dev server runs with its UI; a real worker runs three loans that start at DPD 95 (legal),
40 (visit) and 3 (notice). Chromium (Debian's /usr/bin/chromium, no browser download) is driven
over the Chrome DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-separated JSON on file
descriptors 3 and 4, no websocket library needed). The test opens

- the workflow list filtered with `CollectionStage = "legal"`: the legal loan is listed, the
  visit and notice loans are not;
- the legal loan's workflow page: its workflow id, the current details the workflow keeps
  ("DPD 95", the stage, what it waits for) and its search attributes;

takes a PNG screenshot of each (saved under tmp_path and copied to var/ui-screenshots/ for
humans), and asserts on the rendered page text. Without Chromium the test is skipped, with the
reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from runtime.binaries import temporal_cli
from runtime.config import Settings
from runtime.converter import data_converter
from runtime.search_attributes import register_search_attributes
from tests.harness import free_port, loan_input, running_worker

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "ui-screenshots"
WIDTH, HEIGHT = 1440, 1000
PAGE_TIMEOUT = 25.0

LAUNCH_FLAGS = [
    "--headless",
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
    "--remote-debugging-pipe",
]


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    for candidate in ([explicit] if explicit else []) + list(CHROMIUM_CANDIDATES):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


_PAGE_TEXT = """(() => {
  const parts = [document.body ? document.body.innerText : ""];
  for (const frame of document.querySelectorAll("iframe")) {
    try {
      if (frame.contentDocument && frame.contentDocument.body) parts.push(frame.contentDocument.body.innerText);
    } catch (e) { /* a cross-origin frame: not ours to read */ }
  }
  return parts.join("\\n");
})()"""


class CDPError(RuntimeError):
    pass


class Browser:
    """A headless Chromium on a DevTools pipe: one page, navigate, read text, screenshot."""

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 transport: asyncio.BaseTransport, write_fd: int) -> None:
        self.proc = proc
        self.reader = reader
        self.transport = transport
        self.write_fd = write_fd
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pump = asyncio.create_task(self._read())
        self.session: str | None = None

    @classmethod
    async def launch(cls, executable: str, profile: Path) -> Browser:
        # fd 3: commands to the browser; fd 4: its answers. bash (dash takes single-digit fds only)
        # maps our pipe ends onto them and execs the browser.
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        args = [*LAUNCH_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        profile.mkdir(parents=True, exist_ok=True)
        log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115 - kept for the process's life
        proc = await asyncio.create_subprocess_exec(
            "/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', executable, *args,
            pass_fds=(to_browser_r, from_browser_w),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        log.close()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_browser_r, "rb", 0))
        browser = cls(proc, reader, transport, to_browser_w)
        await browser.send("Browser.getVersion")
        return browser

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.reader.readuntil(b"\0")
                message = json.loads(raw[:-1])
                future = self.pending.pop(message.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(CDPError("the browser closed the DevTools pipe"))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 15.0,
                   session: bool = False) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.write_fd, data):]
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def open_page(self) -> None:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self.session = attached["sessionId"]
        await self.send("Page.enable", session=True)
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, session=True)

    async def goto(self, url: str) -> None:
        result = await self.send("Page.navigate", {"url": url}, session=True)
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                 session=True)
        if "exceptionDetails" in result:
            raise CDPError(f"evaluate {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def text(self) -> str:
        """The visible text, with that of same-origin frames (the UI renders markdown in one), its
        white space collapsed to single spaces (the UI splits "1 Workflow" over two elements)."""
        return " ".join((await self.evaluate(_PAGE_TEXT) or "").split())

    async def wait_for_text(self, *needles: str, timeout: float = PAGE_TIMEOUT) -> str:
        """The page's visible text once it contains every needle (the SPA renders asynchronously)."""
        deadline = asyncio.get_running_loop().time() + timeout
        text = ""
        while asyncio.get_running_loop().time() < deadline:
            text = await self.text()
            if all(needle in text for needle in needles):
                await asyncio.sleep(0.5)  # let the last requests settle before a screenshot
                return await self.text()
            await asyncio.sleep(0.3)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"the page never showed {missing}; it shows:\n{text[:3000]}")

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                                 session=True, timeout=30.0)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        try:
            await self.send("Browser.close", timeout=5.0)
        except (CDPError, asyncio.TimeoutError, OSError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), 10.0)
        except asyncio.TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        self.pump.cancel()
        self.transport.close()
        os.close(self.write_fd)


async def _wait_listed(client: Any, query: str, wanted: str, timeout: float = 15.0) -> set[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    found: set[str] = set()
    while asyncio.get_running_loop().time() < deadline:
        found = {wf.id async for wf in client.list_workflows(query)}
        if wanted in found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"{query!r} never listed {wanted}; it listed {sorted(found)}")


def _keep(shot: Path) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / shot.name
    shutil.copyfile(shot, kept)
    return kept


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


async def test_operator_finds_legal_loans_and_reads_a_loan_in_the_web_ui(tmp_path: Path):
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); the UI check needs a real browser")

    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(Settings()),
        ui=True,
        ui_port=ui_port,
    )
    browser: Browser | None = None
    try:
        client = env.client
        await register_search_attributes(client)
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        run = uuid.uuid4().hex[:6].upper()
        async with running_worker(client, tmp_path) as h:
            legal = await h.start(loan_input(f"UI-LEGAL-{run}", today=today, dpd=95, principal="20000.00"))
            visit = await h.start(loan_input(f"UI-VISIT-{run}", today=today, dpd=40))
            notice = await h.start(loan_input(f"UI-NOTICE-{run}", today=today, dpd=3))
            await _wait_listed(client, f'CollectionStage = "visit" AND LoanId = "UI-VISIT-{run}"', visit.id)
            await _wait_listed(client, f'CollectionStage = "notice" AND LoanId = "UI-NOTICE-{run}"', notice.id)
            await _wait_listed(client, 'CollectionStage = "legal"', legal.id)
            status = await h.status(legal)
            assert status.stage is not None and status.stage.value == "legal"

            browser = await Browser.launch(executable, tmp_path / "chromium-profile")
            await browser.open_page()
            base = f"http://127.0.0.1:{ui_port}/namespaces/{client.namespace}"

            # 1. The workflow list, filtered by stage as an operator types it in the filter box.
            query = 'CollectionStage="legal"'
            await browser.goto(f"{base}/workflows?query={urllib.parse.quote(query)}")
            listed = await browser.wait_for_text(legal.id, "CollectionWorkflow", "1 Workflow")
            list_shot = await browser.screenshot(tmp_path / "workflows-stage-legal.png")
            assert legal.id in listed
            assert visit.id not in listed and notice.id not in listed, listed[:2000]
            assert re.search(r"(?<!\d)1 Workflow(?!s)", listed) and "1 RUNNING" in listed, listed[:1500]
            assert 'CollectionStage = "legal"' in listed  # the filter chip
            assert "RUNNING" in listed.upper()

            # The same list unfiltered shows all three: the filter, not an empty server, hid them.
            await browser.goto(f"{base}/workflows")
            everything = await browser.wait_for_text(legal.id, visit.id, notice.id, "3 Workflows")
            all_shot = await browser.screenshot(tmp_path / "workflows-all.png")
            assert "CollectionStage" not in everything.split(legal.id)[0]  # no filter applied

            # 2. The legal loan's page. "User Metadata": the current details the workflow keeps.
            run_id = (await legal.describe()).run_id
            loan_url = f"{base}/workflows/{urllib.parse.quote(legal.id)}/{run_id}"
            await browser.goto(f"{loan_url}/user-metadata")
            page = await browser.wait_for_text(legal.id, "Current Details", "DPD 95", "Waiting for")
            details_shot = await browser.screenshot(tmp_path / "loan-legal-details.png")
            assert run_id in page and "CollectionWorkflow" in page and "RUNNING" in page.upper()
            # The details' head line: "**<loan>** · collecting · legal · DPD 95 · owed … CNY · paid 0.00"
            assert re.search(rf"UI-LEGAL-{run} · collecting · legal · DPD 95 · owed 20\d{{3}}\.\d\d CNY", page), page[-1500:]

            # 3. "Search Attributes": what the list filters on, as the workflow last upserted them.
            await browser.goto(f"{loan_url}/metadata")
            page = await browser.wait_for_text(legal.id, '"CollectionStage": "legal"')
            attributes_shot = await browser.screenshot(tmp_path / "loan-legal-search-attributes.png")
            assert f'"LoanId": "UI-LEGAL-{run}"' in page
            assert '"CollectionState": "collecting"' in page
            assert '"DaysPastDue": 95' in page
            assert re.search(r'"OutstandingAmount": 20\d{3}', page), page[-800:]
    finally:
        if browser is not None:
            await browser.close()
        await env.shutdown()

    for shot in (list_shot, all_shot, details_shot, attributes_shot):
        assert _is_png(shot), f"{shot} is not a real screenshot"
        _keep(shot)
