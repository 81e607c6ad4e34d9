"""What an operator sees: the Temporal Web UI of the dev server, in a real headless Chromium.

The dev server runs with its UI; a real worker runs three loans that start at DPD 95 (legal),
40 (visit) and 3 (notice). Chromium (Debian's /usr/bin/chromium, no browser download) is driven
by Playwright for Python (tests/browser.py). The test opens

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
import re
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
from tests.browser import chromium_path, is_png, keep, open_browser
from tests.harness import free_port, loan_input, running_worker


async def _wait_listed(client: Any, query: str, wanted: str, timeout: float = 15.0) -> set[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    found: set[str] = set()
    while asyncio.get_running_loop().time() < deadline:
        found = {wf.id async for wf in client.list_workflows(query)}
        if wanted in found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"{query!r} never listed {wanted}; it listed {sorted(found)}")


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

            async with open_browser(executable) as browser:
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

                # The same list unfiltered shows all three loans (and their borrowers' entities): the filter,
                # not an empty server, hid them.
                await browser.goto(f"{base}/workflows")
                everything = await browser.wait_for_text(legal.id, visit.id, notice.id, "6 Workflows")
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
        await env.shutdown()

    for shot in (list_shot, all_shot, details_shot, attributes_shot):
        assert is_png(shot), f"{shot} is not a real screenshot"
        keep(shot)
