"""The outbox: one JSON object a line, a file per channel, each key at most once per channel,
also with many coroutines and several worker processes appending at the same time."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import textwrap
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from activities.outbox import Outbox
from domain.commands import BureauReport

ROOT = Path(__file__).resolve().parents[1]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_append_writes_one_json_line_with_key_and_recorded_at(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "nested" / "outbox")  # the directory is created on demand
    before = datetime.now(UTC)
    assert await outbox.append("sms", "k-1", {"to": "+8613800000000", "text": "您好"}) is True

    path = tmp_path / "nested" / "outbox" / "sms.jsonl"
    [line] = lines(path)
    assert line["key"] == "k-1"
    assert line["to"] == "+8613800000000"
    assert line["text"] == "您好"
    recorded = datetime.fromisoformat(line["recorded_at"])
    assert recorded.utcoffset() is not None and recorded.utcoffset().total_seconds() == 0
    assert before <= recorded <= datetime.now(UTC)
    assert "您好" in path.read_text(encoding="utf-8")  # readable, not \\u-escaped
    assert outbox.read("sms") == [line]


async def test_same_key_twice_writes_nothing_the_second_time(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    assert await outbox.append("agency", "k", {"n": 1}) is True
    assert await outbox.append("agency", "k", {"n": 2}) is False
    assert [r["n"] for r in outbox.read("agency")] == [1]
    # Another channel is another file: the same key is new there.
    assert await outbox.append("bureau", "k", {"n": 3}) is True
    assert outbox.channels() == ["agency", "bureau"]


async def test_a_new_outbox_on_the_same_directory_knows_the_keys(tmp_path: Path) -> None:
    assert await Outbox(tmp_path).append("email", "k", {"a": 1}) is True
    again = Outbox(tmp_path)
    assert await again.contains("email", "k") is True
    assert await again.append("email", "k", {"a": 2}) is False
    assert (await again.get("email", "k"))["a"] == 1
    assert await again.get("email", "other") is None
    assert await again.contains("nochannel", "k") is False
    assert not (tmp_path / "nochannel.jsonl").exists()  # looking does not create files


async def test_money_is_written_as_two_place_strings(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    report = BureauReport(
        key="r",
        loan_id="L",
        borrower_id="B",
        status="delinquent",
        days_past_due=40,
        currency="CNY",
        amount_owed="5000.5",
        as_of="2026-11-29",
    )
    await outbox.append("bureau", "r", report.model_dump(mode="json", exclude={"key"}))
    await outbox.append("bureau", "d", {"raw_decimal": Decimal("12.30")})
    first, second = outbox.read("bureau")
    assert first["amount_owed"] == "5000.50"
    assert first["as_of"] == "2026-11-29"
    assert second["raw_decimal"] == "12.30"


async def test_bad_channel_or_key_is_refused(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    with pytest.raises(ValueError, match="channel"):
        await outbox.append("../etc/passwd", "k", {})
    with pytest.raises(ValueError, match="key"):
        await outbox.append("sms", "  ", {})
    assert list(tmp_path.iterdir()) == []


async def test_many_coroutines_same_and_different_keys(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    keys = [f"key-{i}" for i in range(60)]
    attempts = keys * 5
    random.Random(7).shuffle(attempts)
    results = await asyncio.gather(*(outbox.append("voice", k, {"k": k}) for k in attempts))
    assert sum(results) == len(keys)
    written = [r["key"] for r in outbox.read("voice")]
    assert sorted(written) == sorted(keys)


async def test_two_outbox_objects_in_one_process_share_the_file_safely(tmp_path: Path) -> None:
    a, b = Outbox(tmp_path), Outbox(tmp_path)
    keys = [f"k{i}" for i in range(40)]
    results = await asyncio.gather(
        *(a.append("legal", k, {"by": "a"}) for k in keys), *(b.append("legal", k, {"by": "b"}) for k in keys)
    )
    assert sum(results) == len(keys)
    assert sorted(r["key"] for r in a.read("legal")) == sorted(keys)


CHILD = textwrap.dedent(
    """
    import asyncio, random, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from activities.outbox import Outbox

    directory, index, shared = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    async def main():
        outbox = Outbox(directory)
        keys = [f"shared-{i}" for i in range(shared)] + [f"own-{index}-{i}" for i in range(20)]
        random.Random(index).shuffle(keys)
        (directory / f"ready-{index}").touch()
        while not (directory / "go").exists():
            time.sleep(0.005)
        added = await asyncio.gather(*(outbox.append("agent_tasks", k, {"by": index}) for k in keys))
        print(sum(added))

    asyncio.run(main())
    """
)


async def test_several_processes_append_exactly_one_line_per_key(tmp_path: Path) -> None:
    processes, shared = 3, 150
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(ROOT), str(tmp_path), str(i), str(shared),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(processes)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < processes:
        assert time.monotonic() < deadline, "children did not start"
        await asyncio.sleep(0.02)
    (tmp_path / "go").touch()
    outputs = [await child.communicate() for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err.decode()

    added = sum(int(out.decode().strip()) for out, _ in outputs)
    assert added == shared + processes * 20
    records = Outbox(tmp_path).read("agent_tasks")
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == shared + processes * 20
    # Every line is whole JSON: no interleaved writes.
    raw = (tmp_path / "agent_tasks.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(raw) == len(records)


async def test_a_line_torn_by_a_crash_is_skipped_and_the_next_append_starts_clean(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    await outbox.append("sms", "a", {"n": 1})
    with open(tmp_path / "sms.jsonl", "ab") as fh:
        fh.write(b'{"key": "torn", "n": ')  # a crash mid-write
    assert await Outbox(tmp_path).append("sms", "b", {"n": 2}) is True
    assert [r["key"] for r in Outbox(tmp_path).read("sms")] == ["a", "b"]
    # "torn" never made it: it can still be written.
    assert await Outbox(tmp_path).append("sms", "torn", {"n": 3}) is True


async def test_a_whole_record_missing_only_its_newline_still_counts(tmp_path: Path) -> None:
    (tmp_path / "sms.jsonl").write_bytes(b'{"key": "done", "n": 1}')
    outbox = Outbox(tmp_path)
    assert await outbox.append("sms", "done", {"n": 2}) is False
    assert await outbox.append("sms", "next", {"n": 3}) is True
    assert [r["key"] for r in outbox.read("sms")] == ["done", "next"]


async def test_the_outbox_notices_lines_other_processes_appended(tmp_path: Path) -> None:
    mine = Outbox(tmp_path)
    await mine.append("bureau", "x", {})
    with open(tmp_path / "bureau.jsonl", "a", encoding="utf-8") as fh:  # another writer
        fh.write(json.dumps({"key": "y", "recorded_at": "2026-01-01T00:00:00+00:00"}) + "\n")
    assert await mine.contains("bureau", "y") is True
    assert await mine.append("bureau", "y", {}) is False


async def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    await outbox.append("email", "old", {})
    os.replace(tmp_path / "email.jsonl", tmp_path / "email.jsonl.1")  # an operator rotates it
    assert await outbox.append("email", "new", {}) is True
    assert [r["key"] for r in outbox.read("email")] == ["new"]
