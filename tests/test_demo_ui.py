"""The demo's encrypted history, as an operator sees it in the Web UI (slow; needs Chromium).

`collections demo --keep-running` with encryption on: an operator follows what the demo prints,
logs in at the codec server's /login page with the printed operator token, turns on "Include
cross-origin credentials" in the UI's codec settings (the browser override the UI keeps in local
storage), and the loan's page shows the workflow input decrypted: the borrower's email, which
Temporal itself only holds as ciphertext. A browser that has not logged in sees no clear input.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import chromium_path, is_png, keep, open_browser

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "zhang.wei@example.com"  # DEMO-001's borrower, in demo/portfolio.csv


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _read_until(proc: asyncio.subprocess.Process, marker: str, timeout: float) -> str:
    assert proc.stdout is not None
    out = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while marker not in out:
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - loop.time()))
        if not line:
            raise AssertionError(f"the demo ended before {marker!r}:\n{out}")
        out += line.decode(errors="replace")
    return out


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_operator_sees_the_decrypted_input_in_the_web_ui_after_codec_login(tmp_path: Path):
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); the UI check needs a real browser")
    ports = {name: _free_port() for name in ("--port", "--ui-port", "--smtp-port", "--portal-port", "--codec-port")}
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="400", PYTHONUNBUFFERED="1")
    env.pop("COLLECTIONS_ENCRYPTION_KEY", None)
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "demo", "--keep-running", "--max-days", "1", "--state-dir", str(tmp_path / "demo"),
        *(x for kv in ports.items() for x in (kv[0], str(kv[1]))),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        out = await _read_until(demo, "Ctrl-C stops everything.", 150)
        match = re.search(r"paste this operator token.*\n\s+(\S+)", out)
        assert match, out
        operator_token = match.group(1)
        codec = f"http://localhost:{ports['--codec-port']}"
        ui = f"http://localhost:{ports['--ui-port']}"
        assert f"open {codec}/login" in out and "Include cross-origin credentials" in out

        async with open_browser(executable) as browser:
            # The UI's codec settings, "use my browser setting": endpoint and cross-origin credentials.
            await browser.goto(f"{ui}/namespaces/default/workflows")
            await browser.wait_for_text("Workflows")
            for key, value in (("endpoint", codec), ("includeCredentials", True), ("passAccessToken", False),
                               ("overrideRemoteCodecConfiguration", True)):
                await browser.page.evaluate("([key, value]) => localStorage.setItem(key, value)", [key, json.dumps(value)])
            loan_page = f"{ui}/namespaces/default/workflows/loan-DEMO-001"

            # Not logged in at the codec server: the input stays ciphertext on the page.
            await browser.goto(loan_page)
            before = await browser.wait_for_text("loan-DEMO-001", "Input")
            await asyncio.sleep(2)
            before = await browser.text()
            assert EMAIL not in before

            # The operator logs in with the printed token (the codec server sets an HttpOnly cookie).
            await browser.goto(f"{codec}/login")
            await browser.wait_for_text("Paste an operator token")
            await browser.page.fill("textarea[name=token]", operator_token)
            await browser.page.click("button[type=submit]")
            await browser.wait_for_text("Logged in as operator demo-operator")

            await browser.goto(loan_page)
            page = await browser.wait_for_text("loan-DEMO-001", EMAIL, timeout=40)
            shot = await browser.screenshot(tmp_path / "demo-loan-decrypted-input.png")
            assert "DEMO-001" in page and "张伟" in page
    finally:
        if demo.returncode is None:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(demo.wait(), 60)
            except TimeoutError:
                os.killpg(demo.pid, signal.SIGKILL)
                await demo.wait()
    assert demo.returncode == 0
    assert is_png(shot)
    keep(shot)
