"""The borrower entity's doors in the portal (contract v2), over real HTTP to a real worker on the dev
server: a borrower's status and flags on `borrower-<borrower_id>`, a loan's dispute and its resolution,
agents' and agencies' contact requests, and the signed opt-out link of a real email (RFC 8058
one-click) and SMS (in a real browser). Each door's refusals (401, 403, 404, 409, 415, 422, 503)
change nothing."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from domain.book import FEATURES, LAZY_V1, LoanBook
from domain.borrower import BorrowerStatus
from domain.contract import COLLECTION_WORKFLOW, borrower_workflow_id, workflow_id
from domain.models import LoanState, Status
from portal import create_app
from runtime.config import Settings
from runtime.links import OptOutLinks
from tests.harness import LINK_SECRET, PORTAL, loan_input
from tests.test_portal_support import (
    ALWAYS_OPEN,
    SECRET,
    TZ,
    World,
    bearer,
    eventually,
    portal_config,
    portal_worker,
    serve,
    status_of,
    today,
)

pytestmark = pytest.mark.devserver

RUN = uuid.uuid4().hex[:6]
SELF, TWO_A, TWO_B, FLAGS, CONTACT, VISIT, DISPUTE, UPHELD, OLD, BROWSER = (
    f"PB{RUN}-{n}" for n in ("self", "two-a", "two-b", "flags", "contact", "visit", "dispute", "upheld", "old",
                             "browser"))
TWO = f"B-PB{RUN}-two"
"""The borrower of TWO_A and TWO_B: one person, two loans."""
OWNER = {loan: f"B-{loan}" for loan in (SELF, FLAGS, CONTACT, VISIT, DISPUTE, UPHELD, OLD, BROWSER)} | {TWO_A: TWO, TWO_B: TWO}
OPS = "ops-1"
NOBODY = f"B-PB{RUN}-nobody"


async def entity(client: Client, borrower_id: str) -> BorrowerStatus | None:
    """The borrower entity's status, or None while it does not exist."""
    try:
        return await client.get_workflow_handle(borrower_workflow_id(borrower_id)).query(
            "status", result_type=BorrowerStatus)
    except RPCError:
        return None


def events(status: Status | BorrowerStatus, kind: str) -> list[dict[str, Any]]:
    return [e.details for e in status.events if e.kind == kind]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["message"], body
    return body


def fields_of(response: httpx.Response) -> dict[str, str]:
    return {f["field"]: f["reason"] for f in response.json().get("fields", [])}


@pytest.fixture(scope="module")
async def world(dev_env, tmp_path_factory):
    async with portal_worker(dev_env.client, tmp_path_factory.mktemp("borrowers")) as w:
        handles = {loan: await w.start_loan(loan, dpd=3 if loan in (SELF, BROWSER) else 10, borrower_id=OWNER[loan])
                   for loan in (SELF, TWO_A, TWO_B, FLAGS, CONTACT, VISIT, DISPUTE, UPHELD, BROWSER)}
        # A loan from before the borrower entity (its book without borrower-v1, as a loan opened by an
        # older engine carries it across continue-as-new): its contacts are its own.
        inp = loan_input(OLD, today=today(), dpd=10, policy=ALWAYS_OPEN, tz=TZ)
        book = LoanBook.open(inp, datetime.now(UTC), features=FEATURES[: FEATURES.index(LAZY_V1) + 1])
        handles[OLD] = await w.client.start_workflow(COLLECTION_WORKFLOW, args=[inp, book], id=workflow_id(OLD),
                                                     task_queue=w.task_queue)
        for borrower in {OWNER[loan] for loan in handles if loan != OLD}:
            await eventually(lambda b=borrower: entity(w.client, b), lambda s: s is not None and s.open_loans >= 1)
        await eventually(lambda: entity(w.client, TWO), lambda s: s is not None and s.open_loans == 2)
        w.handles = handles  # type: ignore[attr-defined]
        yield w


def app_for(client: Client, world: World, **settings: Any) -> Any:
    values: dict[str, Any] = {"portal_jwt_secret": SECRET, "task_queue": world.task_queue,
                              "link_secret": LINK_SECRET, "portal_url": PORTAL}
    return create_app(Settings(**(values | settings)), client=client,
                      config=portal_config(rate_per_second=1000, rate_burst=1000))


@pytest.fixture(scope="module")
async def api(dev_env, world):
    async with serve(app_for(dev_env.client, world)) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield http


def handle(world: World, loan: str) -> Any:
    return world.handles[loan]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------
# the document


async def test_the_openapi_document_describes_each_new_door_strictly(api):
    doc = (await api.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in ("/v1/borrowers/{borrower_id}", "/v1/borrowers/{borrower_id}/opt-out", "/v1/borrowers/{borrower_id}/opt-in",
                 "/v1/borrowers/{borrower_id}/flags", "/v1/borrowers/{borrower_id}/flags/clear",
                 "/v1/loans/{loan_id}/disputes", "/v1/loans/{loan_id}/dispute-resolution",
                 "/v1/loans/{loan_id}/contact-requests", "/v1/unsubscribe/{token}"):
        assert path in paths, path
    schemas = doc["components"]["schemas"]
    for name in ("ChannelRequest", "CeaseContactFlag", "BreathingSpaceFlag", "BankruptcyFlag", "DeceasedFlag",
                 "ClearFlagRequest", "DisputeRequest", "DisputeResolutionRequest", "ContactRequestBody"):
        assert schemas[name]["additionalProperties"] is False, name
    assert schemas["ChannelRequest"]["properties"]["channel"]["enum"] == ["sms", "email", "voice", "call"]
    assert schemas["ContactRequestBody"]["properties"] == {"channel": {"type": "string", "enum": ["call", "visit"],
                                                                       "title": "Channel"}}
    assert schemas["DisputeResolutionRequest"]["properties"]["upheld"]["type"] == "boolean"
    flags = paths["/v1/borrowers/{borrower_id}/flags"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert flags["discriminator"]["propertyName"] == "flag" and len(flags["oneOf"]) == 4
    unsubscribe = paths["/v1/unsubscribe/{token}"]
    assert "security" not in unsubscribe["get"] and "security" not in unsubscribe["post"]
    form = unsubscribe["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["properties"] == {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}
    assert form["additionalProperties"] is False
    assert "text/html" in unsubscribe["get"]["responses"]["200"]["content"]
    contact = paths["/v1/loans/{loan_id}/contact-requests"]["post"]
    assert contact["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ContactAnswer")
    assert {"401", "403", "404", "409", "422"} <= set(contact["responses"])


# ------------------------------------------------------------------------------------------------
# the borrower's status


async def test_a_borrower_sees_their_entity_and_operators_see_any(api, world):
    url = f"/v1/borrowers/{OWNER[SELF]}"
    r = await api.get(url, headers=bearer(OWNER[SELF]))
    assert r.status_code == 200, r.text
    body = BorrowerStatus.model_validate(r.json())
    assert body.borrower_id == OWNER[SELF] and [loan["loan_id"] for loan in body.loans] == [SELF]
    assert body.rule_pack.value == "UK" and body.open_loans == 1 and body.contacts_today >= 0
    assert r.headers["cache-control"] == "no-store"
    r = await api.get(f"/v1/borrowers/{TWO}", headers=bearer(OPS, "operator"))
    assert r.status_code == 200 and sorted(loan["loan_id"] for loan in r.json()["loans"]) == [TWO_A, TWO_B]

    assert (await api.get(url)).status_code == 401
    assert_error(await api.get(url, headers=bearer(TWO)), 403, "forbidden")  # another borrower
    assert_error(await api.get(url, headers=bearer("A-1", "agent")), 403, "forbidden")
    assert_error(await api.get(url, headers=bearer("east-7", "agency", agency_id="agency-east")), 403, "forbidden")
    # no entity: the borrower has no loan with us
    body = assert_error(await api.get(f"/v1/borrowers/{NOBODY}", headers=bearer(OPS, "operator")), 404, "not_found")
    assert NOBODY in body["message"] and "borrower-" in body["message"]
    assert_error(await api.get(f"/v1/borrowers/{NOBODY}", headers=bearer(NOBODY)), 404, "not_found")
    assert (await api.get(f"/v1/borrowers/{'x' * 65}", headers=bearer(OPS, "operator"))).status_code == 422


# ------------------------------------------------------------------------------------------------
# opt-out and opt-in


async def test_opt_out_and_opt_in_reach_every_loan_of_the_borrower(api, world):
    r = await api.post(f"/v1/borrowers/{TWO}/opt-out", json={"channel": "sms"}, headers=bearer(TWO))
    assert r.status_code == 202, r.text
    assert r.json() == {"borrower_id": TWO, "signal": "opt_out"}
    person = await eventually(lambda: entity(world.client, TWO), lambda s: s.flags.opted_out == ["sms"])
    assert events(person, "flag_changed")[-1]["signal"] == "opt_out"
    for loan in (TWO_A, TWO_B):  # both workflows' status show the flag
        status = await eventually(lambda loan=loan: status_of(handle(world, loan)),
                                  lambda s: s.flags is not None and s.flags["opted_out"] == ["sms"])
        change = events(status, "borrower_flag")[-1]
        assert change["change"] == "opt_out" and change["channel"] == "sms" and "operator_id" not in change

    # an operator opts the borrower back in (the borrower phoned): recorded with the operator's id
    r = await api.post(f"/v1/borrowers/{TWO}/opt-in", json={"channel": "sms"}, headers=bearer(OPS, "operator"))
    assert r.status_code == 202, r.text
    await eventually(lambda: entity(world.client, TWO), lambda s: s.flags.opted_out == [])
    for loan in (TWO_A, TWO_B):
        status = await eventually(lambda loan=loan: status_of(handle(world, loan)),
                                  lambda s: s.flags is not None and s.flags["opted_out"] == [])
        assert events(status, "borrower_flag")[-1] | {"flags": None} == {
            "change": "opt_in", "channel": "sms", "operator_id": OPS, "flags": None}

    before = await entity(world.client, TWO)
    url = f"/v1/borrowers/{TWO}/opt-out"
    r = await api.post(url, json={"channel": "visit"}, headers=bearer(TWO))
    assert_error(r, 422, "validation_error")
    assert "channel" in fields_of(r)
    r = await api.post(url, json={"channel": "sms", "operator_id": "me"}, headers=bearer(OPS, "operator"))
    assert "operator_id" in fields_of(r) and r.status_code == 422  # the operator is the token's, never the body's
    assert (await api.post(url, json={"channel": "sms"})).status_code == 401
    assert_error(await api.post(url, json={"channel": "sms"}, headers=bearer(OWNER[SELF])), 403, "forbidden")
    assert_error(await api.post(url, json={"channel": "sms"}, headers=bearer("A-1", "agent")), 403, "forbidden")
    body = assert_error(await api.post(f"/v1/borrowers/{NOBODY}/opt-out", json={"channel": "sms"},
                                       headers=bearer(NOBODY)), 404, "not_found")
    assert "no open loan" in body["message"] and "not recorded" in body["message"]
    await asyncio.sleep(0.5)
    after = await entity(world.client, TWO)
    assert after is not None and before is not None
    assert after.flags == before.flags and after.flags_seq == before.flags_seq  # the refusals changed nothing


# ------------------------------------------------------------------------------------------------
# flags


async def test_a_borrower_may_cease_contact_operators_set_and_clear_the_rest(api, world):
    who, url = OWNER[FLAGS], f"/v1/borrowers/{OWNER[FLAGS]}/flags"
    body = assert_error(await api.post(url, json={"flag": "bankruptcy", "reference": "BK-1"}, headers=bearer(who)),
                        403, "forbidden")
    assert "operator" in body["message"]
    r = await api.post(url, json={"flag": "cease_contact", "reason": "please only write to me"}, headers=bearer(who))
    assert r.status_code == 202 and r.json()["signal"] == "cease_contact", r.text
    await eventually(lambda: entity(world.client, who), lambda s: s.flags.cease_contact == "please only write to me")
    status = await eventually(lambda: status_of(handle(world, FLAGS)),
                              lambda s: (s.flags or {}).get("cease_contact") == "please only write to me")
    assert events(status, "borrower_flag")[-1]["reason"] == "please only write to me"

    start = today().isoformat()
    r = await api.post(url, json={"flag": "breathing_space", "start": start, "days": 30}, headers=bearer(OPS, "operator"))
    assert r.status_code == 202, r.text
    person = await eventually(lambda: entity(world.client, who), lambda s: s.flags.breathing_space is not None)
    assert person.flags.breathing_space.start.isoformat() == start
    assert person.flags.breathing_space.end == today() + timedelta(days=30)
    status = await eventually(lambda: status_of(handle(world, FLAGS)), lambda s: (s.flags or {}).get("breathing_space"))
    assert events(status, "borrower_flag")[-1]["operator_id"] == OPS

    r = await api.post(url, json={"flag": "bankruptcy", "reference": "BK-2026-77"}, headers=bearer(OPS, "operator"))
    assert r.status_code == 202, r.text
    status = await eventually(lambda: status_of(handle(world, FLAGS)), lambda s: s.state == LoanState.PAUSED)
    assert status.flags["bankruptcy"] == "BK-2026-77"
    assert (await entity(world.client, who)).flags.bankruptcy == "BK-2026-77"

    clear = f"{url}/clear"
    assert_error(await api.post(clear, json={"flag": "cease_contact", "reason": "x"}, headers=bearer(who)), 403,
                 "forbidden")
    r = await api.post(clear, json={"flag": "cease_contact", "reason": "borrower consented by phone"},
                       headers=bearer(OPS, "operator"))
    assert r.status_code == 202 and r.json()["signal"] == "clear_flag", r.text
    person = await eventually(lambda: entity(world.client, who), lambda s: s.flags.cease_contact is None)
    cleared = events(person, "flag_changed")[-1]
    assert cleared["signal"] == "clear_flag" and cleared["flag"] == "cease_contact" and cleared["operator_id"] == OPS
    status = await eventually(lambda: status_of(handle(world, FLAGS)),
                              lambda s: (s.flags or {}).get("cease_contact") is None)
    assert status.flags["bankruptcy"] == "BK-2026-77"  # the others stay

    ops = bearer(OPS, "operator")
    bad = {
        "flag": ({"flag": "opt_out", "channel": "sms"}, url),
        "reference": ({"flag": "deceased"}, url),
        "start": ({"flag": "breathing_space", "start": "2026-02-30"}, url),
        "days": ({"flag": "breathing_space", "start": start, "days": 0}, url),
        "reason": ({"flag": "cease_contact", "reason": "   "}, url),
        "operator_id": ({"flag": "cease_contact", "reason": "x", "operator_id": "me"}, url),
    }
    for field, (payload, where) in bad.items():
        r = await api.post(where, json=payload, headers=ops)
        assert r.status_code == 422 and any(field in f for f in fields_of(r)), (field, r.text)
    for payload in ({"flag": "opt_out", "reason": "x"}, {"flag": "cease_contact"}, {"flag": "deceased", "reason": ""}):
        r = await api.post(clear, json=payload, headers=ops)
        assert r.status_code == 422, (payload, r.text)
    body = assert_error(await api.post(f"/v1/borrowers/{NOBODY}/flags", json={"flag": "deceased", "reference": "D-1"},
                                       headers=ops), 404, "not_found")
    assert "no open loan" in body["message"]
    after = await entity(world.client, who)
    assert after.flags.deceased is None and after.flags.cease_contact is None  # the refusals changed nothing


# ------------------------------------------------------------------------------------------------
# disputes


async def test_the_borrower_disputes_and_an_operator_resolves_it(api, world):
    url, who = f"/v1/loans/{DISPUTE}/disputes", OWNER[DISPUTE]
    r = await api.post(url, json={"reason": "I repaid this in March"}, headers=bearer(who))
    assert r.status_code == 202 and r.json() == {"loan_id": DISPUTE, "signal": "dispute"}, r.text
    status = await eventually(lambda: status_of(handle(world, DISPUTE)), lambda s: s.dispute is not None)
    opened = events(status, "dispute_opened")[-1]
    assert opened["reason"] == "I repaid this in March" and "operator_id" not in opened
    assert (await api.post(url, json={"reason": "again"}, headers=bearer(who))).status_code == 202
    await eventually(lambda: status_of(handle(world, DISPUTE)), lambda s: events(s, "dispute_repeated"))

    assert_error(await api.post(url, json={"reason": "x"}, headers=bearer(TWO)), 403, "forbidden")
    assert_error(await api.post(url, json={"reason": "x"}, headers=bearer("A-1", "agent")), 403, "forbidden")
    assert "reason" in fields_of(await api.post(url, json={"reason": " "}, headers=bearer(who)))
    assert "operator_id" in fields_of(await api.post(url, json={"reason": "x", "operator_id": "o"}, headers=bearer(who)))
    assert_error(await api.post(f"/v1/loans/PB{RUN}-nope/disputes", json={"reason": "x"},
                                headers=bearer(OPS, "operator")), 404, "not_found")

    resolve = f"/v1/loans/{DISPUTE}/dispute-resolution"
    assert_error(await api.post(resolve, json={"upheld": False}, headers=bearer(who)), 403, "forbidden")
    r = await api.post(resolve, json={"upheld": "false"}, headers=bearer(OPS, "operator"))
    assert r.status_code == 422 and "upheld" in fields_of(r)
    r = await api.post(resolve, json={"upheld": False, "note": "payment not found in the ledger"},
                       headers=bearer(OPS, "operator"))
    assert r.status_code == 202, r.text
    status = await eventually(lambda: status_of(handle(world, DISPUTE)), lambda s: s.dispute is None)
    assert status.state == LoanState.COLLECTING
    resolved = events(status, "dispute_resolved")[-1]
    assert resolved == {"upheld": False, "note": "payment not found in the ledger", "operator_id": OPS}
    body = assert_error(await api.post(resolve, json={"upheld": True}, headers=bearer(OPS, "operator")), 409,
                        "no_dispute")
    assert "no dispute" in body["message"]


async def test_an_upheld_dispute_writes_the_loan_off_and_closed_loans_refuse(api, world):
    r = await api.post(f"/v1/loans/{UPHELD}/disputes", json={"reason": "not my loan"}, headers=bearer(OPS, "operator"))
    assert r.status_code == 202, r.text
    status = await eventually(lambda: status_of(handle(world, UPHELD)), lambda s: s.dispute is not None)
    assert events(status, "dispute_opened")[-1]["operator_id"] == OPS
    r = await api.post(f"/v1/loans/{UPHELD}/dispute-resolution", json={"upheld": True, "note": "identity fraud"},
                       headers=bearer(OPS, "operator"))
    assert r.status_code == 202, r.text
    final = Status.model_validate(await asyncio.wait_for(handle(world, UPHELD).result(), 30))
    assert final.state == LoanState.CLOSED and final.outcome is not None and final.outcome.value == "written_off"
    assert events(final, "closed")[-1]["reason"] == "dispute upheld"
    assert_error(await api.post(f"/v1/loans/{UPHELD}/disputes", json={"reason": "x"}, headers=bearer(OWNER[UPHELD])),
                 409, "loan_closed")
    assert_error(await api.post(f"/v1/loans/{UPHELD}/dispute-resolution", json={"upheld": True},
                                headers=bearer(OPS, "operator")), 409, "loan_closed")
    assert_error(await api.post(f"/v1/loans/{UPHELD}/contact-requests", json={"channel": "call"},
                                headers=bearer("A-1", "agent")), 409, "loan_closed")


# ------------------------------------------------------------------------------------------------
# contact requests


async def test_an_agent_asks_before_a_call_and_the_borrowers_record_counts_it(api, world):
    url, agent = f"/v1/loans/{CONTACT}/contact-requests", bearer("A-9", "agent")
    before = len((await entity(world.client, OWNER[CONTACT])).contacts)
    r = await api.post(url, json={"channel": "call"}, headers=agent | {"Idempotency-Key": "dial-1"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["allowed"] is True and answer["rule"].startswith("UK."), answer
    again = await api.post(url, json={"channel": "call"}, headers=agent | {"Idempotency-Key": "dial-1"})
    assert again.json() == answer  # the same request once more: the first answer, counted once
    person = await entity(world.client, OWNER[CONTACT])
    mine = [c for c in person.contacts if c.loan_id == CONTACT and c.actor.value == "agent"]
    assert len(person.contacts) == before + 1 and len(mine) == 1 and mine[0].channel.value == "call"
    status = await status_of(handle(world, CONTACT))
    allowed = events(status, "contact_allowed")[-1]
    assert allowed["agent_id"] == "A-9" and allowed["actor"] == "agent" and allowed["channel"] == "call"
    assert set(answer) == {"allowed", "rule", "until", "explanation"}

    assert_error(await api.post(url, json={"channel": "call"}, headers=bearer(OWNER[CONTACT])), 403, "forbidden")
    assert_error(await api.post(url, json={"channel": "call"}, headers=bearer(OPS, "operator")), 403, "forbidden")
    assert "channel" in fields_of(await api.post(url, json={"channel": "sms"}, headers=agent))
    assert "agent_id" in fields_of(await api.post(url, json={"channel": "call", "agent_id": "A-1"}, headers=agent))
    assert_error(await api.post(f"/v1/loans/PB{RUN}-nope/contact-requests", json={"channel": "call"}, headers=agent),
                 404, "not_found")

    # the borrower asks us to cease contact: the next call is not allowed, and says why
    r = await api.post(f"/v1/borrowers/{OWNER[CONTACT]}/flags", json={"flag": "cease_contact", "reason": "stop"},
                       headers=bearer(OWNER[CONTACT]))
    assert r.status_code == 202
    await eventually(lambda: entity(world.client, OWNER[CONTACT]), lambda s: s.flags.cease_contact == "stop")
    r = await api.post(url, json={"channel": "call"}, headers=agent)
    assert r.status_code == 200 and r.json()["allowed"] is False and r.json()["rule"] == "UK.cease_contact", r.text
    status = await status_of(handle(world, CONTACT))
    assert events(status, "contact_blocked")[-1]["rule"] == "UK.cease_contact"


async def test_an_allowed_visit_leaves_the_loan_working(api, world):
    r = await api.post(f"/v1/loans/{VISIT}/contact-requests", json={"channel": "visit"}, headers=bearer("A-9", "agent"))
    assert r.status_code == 200 and r.json()["allowed"] is True, r.text
    h = handle(world, VISIT)
    try:
        # the borrower then asks us to cease contact: the loan must take it (its open call task goes)
        r = await api.post(f"/v1/borrowers/{OWNER[VISIT]}/flags", json={"flag": "cease_contact", "reason": "stop"},
                           headers=bearer(OWNER[VISIT]))
        assert r.status_code == 202
        await asyncio.sleep(3)
        failed = [e async for e in h.fetch_history_events() if e.HasField("workflow_task_failed_event_attributes")]
        assert not failed, failed[0].workflow_task_failed_event_attributes.failure.message
        await eventually(lambda: status_of(h), lambda s: (s.flags or {}).get("cease_contact") == "stop")
    finally:
        await h.terminate("test finished")


async def test_a_loan_from_before_the_borrower_entity_answers_409_and_counts_nothing(api, world):
    r = await api.post(f"/v1/loans/{OLD}/contact-requests", json={"channel": "call"}, headers=bearer("A-1", "agent"))
    body = assert_error(r, 409, "no_borrower_entity")
    assert "predates the borrower entity" in body["message"]
    status = await status_of(handle(world, OLD))
    assert not events(status, "contact_allowed") and not events(status, "contact_blocked")


async def test_an_agency_asks_only_for_loans_placed_with_it(api, world):
    placed = f"PB{RUN}-placed"
    # One-second loan days: warned at DPD 61, placed with the policy's first agency (agency-east) 7 loan
    # days later, and placed until its legal stage, 30 s on.
    h = await world.start_loan(placed, dpd=61, policy=ALWAYS_OPEN | {"day_length_seconds": 1})
    status = await eventually(lambda: status_of(h), lambda s: s.agency is not None, timeout=30)
    assert status.agency.agency_id == "agency-east"
    url = f"/v1/loans/{placed}/contact-requests"
    r = await api.post(url, json={"channel": "call"}, headers=bearer("east-7", "agency", agency_id="agency-east"))
    assert r.status_code == 200 and isinstance(r.json()["allowed"], bool), r.text
    asked = [e for e in (await status_of(h)).events if e.kind.startswith("contact_") and e.details.get("actor") == "agency"]
    assert asked and asked[-1].details["agent_id"] == "agency-east/east-7"
    body = assert_error(await api.post(url, json={"channel": "call"},
                                       headers=bearer("west-3", "agency", agency_id="agency-west")), 403, "forbidden")
    assert "not placed with your agency" in body["message"]
    assert_error(await api.post(f"/v1/loans/{CONTACT}/contact-requests", json={"channel": "call"},
                                headers=bearer("east-7", "agency", agency_id="agency-east")), 403, "forbidden")
    await h.terminate("test finished")


# ------------------------------------------------------------------------------------------------
# the opt-out link


def _unsubscribe_path(url: str) -> str:
    assert url.startswith(f"{PORTAL}/v1/unsubscribe/"), url
    return url.removeprefix(PORTAL)


async def test_the_unsubscribe_link_of_a_real_email_opts_the_borrower_out(api, world):
    address = f"{SELF.lower()}@example.com"
    mails = await eventually(lambda: asyncio.sleep(0, [m for m in world.mail.messages if address in str(m["To"])]),
                             lambda found: bool(found), timeout=20)
    message = mails[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = _unsubscribe_path(" ".join(message["List-Unsubscribe"].split()).strip("<>"))
    who = OWNER[SELF]

    page = await api.get(path)  # a link scanner or the borrower's browser: shows the page, changes nothing
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "电子邮件" in page.text and "emails" in page.text and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    await asyncio.sleep(0.5)
    assert (await entity(world.client, who)).flags.opted_out == []

    # What a mailbox provider does (RFC 8058): POST the one-click body, no bearer token.
    r = await api.post(path, content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "opted_out" and r.json()["channel"] == "email"
    person = await eventually(lambda: entity(world.client, who), lambda s: s.flags.opted_out == ["email"])
    seq = person.flags_seq
    status = await eventually(lambda: status_of(handle(world, SELF)),
                              lambda s: (s.flags or {}).get("opted_out") == ["email"])
    change = events(status, "borrower_flag")[-1]
    assert change["change"] == "opt_out" and change["channel"] == "email"

    # idempotent: again, the same answer, and the entity records that nothing changed
    r = await api.post(path, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and r.json()["status"] == "opted_out"
    person = await eventually(lambda: entity(world.client, who), lambda s: events(s, "flag_unchanged"))
    assert person.flags.opted_out == ["email"] and person.flags_seq == seq
    # the page's button, from a browser: an HTML answer
    r = await api.post(path, data={"List-Unsubscribe": "One-Click"}, headers={"Accept": "text/html"})
    assert r.status_code == 200 and "已退订" in r.text and "no longer contact you by emails" in r.text
    # multipart/form-data, as RFC 8058 prefers it
    r = await api.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200 and r.json()["status"] == "opted_out", r.text


async def test_the_list_unsubscribe_header_is_the_bare_url_in_angle_brackets(world):
    address = f"{SELF.lower()}@example.com"
    mails = await eventually(lambda: asyncio.sleep(0, [m for m in world.mail.messages if address in str(m["To"])]),
                             lambda found: bool(found), timeout=20)
    raw = " ".join(mails[0]["List-Unsubscribe"].split())  # unfolded
    assert raw.startswith(f"<{PORTAL}/v1/unsubscribe/") and raw.endswith(">"), raw


async def test_bad_links_and_bodies_change_nothing(api, world):
    links = OptOutLinks(LINK_SECRET, PORTAL)
    who = OWNER[FLAGS]
    before = await entity(world.client, who)
    good = links.token(who, "voice")
    body, tag = good.split(".")
    forged = OptOutLinks("another-secret-0123456789", PORTAL).token(who, "voice")
    one_click = {"Content-Type": "application/x-www-form-urlencoded"}
    for token in (f"{body}.{tag[:-2]}AA", forged, "not-a-token", f"{tag}.{body}"):
        r = await api.post(f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=one_click)
        assert_error(r, 404, "not_found")
        r = await api.get(f"/v1/unsubscribe/{token}")
        assert r.status_code == 404 and "链接无效" in r.text and "not valid" in r.text
    path = f"/v1/unsubscribe/{good}"
    for content, reason_in in ((b"", "List-Unsubscribe"), (b"List-Unsubscribe=Yes", "List-Unsubscribe"),
                               (b"List-Unsubscribe=One-Click&channel=sms", "channel"),
                               (b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click", "List-Unsubscribe")):
        r = await api.post(path, content=content, headers=one_click)
        assert r.status_code == 422 and reason_in in fields_of(r), (content, r.text)
    r = await api.post(path, json={"List-Unsubscribe": "One-Click"})
    assert_error(r, 415, "unsupported_media_type")
    await asyncio.sleep(0.5)
    after = await entity(world.client, who)
    assert after.flags.opted_out == before.flags.opted_out and "voice" not in after.flags.opted_out
    # a good link for a borrower with no loan with us: nothing to stop, said so
    r = await api.post(f"/v1/unsubscribe/{links.token(NOBODY, 'sms')}", content=b"List-Unsubscribe=One-Click",
                       headers=one_click)
    assert r.status_code == 200 and r.json()["status"] == "no_open_loans"


async def test_without_the_link_secret_the_links_answer_503_and_the_rest_works(dev_env, world):
    app = app_for(dev_env.client, world, link_secret=None)
    token = OptOutLinks(LINK_SECRET, PORTAL).token(OWNER[SELF], "sms")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post(f"/v1/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert_error(r, 503, "unavailable")
        assert "COLLECTIONS_LINK_SECRET" in r.json()["message"]
        r = await http.get(f"/v1/unsubscribe/{token}")
        assert r.status_code == 503 and "暂不可用" in r.text
        assert (await http.get(f"/v1/borrowers/{OWNER[SELF]}", headers=bearer(OWNER[SELF]))).status_code == 200
    assert "sms" not in (await entity(world.client, OWNER[SELF])).flags.opted_out


async def test_the_unsubscribe_page_in_a_real_browser(dev_env, world):
    from tests.browser import chromium_path, open_browser

    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); the page check needs a real browser")
    # The link of the SMS the worker sent (the outbox's SMS provider keeps what it would send).
    sms_file = world.outbox_dir / "sms.jsonl"
    links = OptOutLinks(LINK_SECRET, PORTAL)

    def sms_link() -> str | None:
        """The opt-out link of the first SMS to BROWSER's borrower (every loan here has the same phone)."""
        if not sms_file.exists():
            return None
        for found in re.finditer(re.escape(PORTAL) + r"/v1/unsubscribe/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
                                 sms_file.read_text(encoding="utf-8")):
            if links.verify(found.group(0).rsplit("/", 1)[1]) == (OWNER[BROWSER], "sms"):
                return found.group(0)
        return None

    link = await eventually(lambda: asyncio.sleep(0, sms_link()), lambda found: found is not None, timeout=20)
    async with serve(app_for(dev_env.client, world)) as base, open_browser(executable) as browser:
        await browser.goto(base + _unsubscribe_path(link))
        await browser.wait_for_text("停止接收短信", "Stop text messages (SMS)")
        await browser.page.click("button[type=submit]")
        text = await browser.wait_for_text("已退订", "Done")
        assert "no longer contact you by text messages (SMS)" in text
    await eventually(lambda: entity(world.client, OWNER[BROWSER]), lambda s: s.flags.opted_out == ["sms"])


async def test_opt_out_links_are_rate_limited_per_link_not_per_address(dev_env, world):
    """A mailbox provider posts the one-click opt-outs of many borrowers from few addresses: the bucket is
    the link's, so one link hammered is refused (429) while the next link still goes through."""
    app = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue, link_secret=LINK_SECRET,
                              portal_url=PORTAL), client=dev_env.client, config=portal_config(rate_per_second=0.01,
                                                                                              rate_burst=2))
    links = OptOutLinks(LINK_SECRET, PORTAL)
    first, second = (f"/v1/unsubscribe/{links.token(NOBODY + n, 'email')}" for n in ("-1", "-2"))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        answers = [(await http.get(first)).status_code for _ in range(3)]
        assert answers == [200, 200, 429], answers
        r = await http.post(first, data={"List-Unsubscribe": "One-Click"})
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        r = await http.post(second, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and r.json()["status"] == "no_open_loans"
