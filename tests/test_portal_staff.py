"""Staff access: agent, agency and operator tokens are RS256/ES256 from the staff identity provider,
checked against its key set (a file, or a URL read with PyJWKClient) with issuer and audience;
whatever a borrower's key (PORTAL_JWT_SECRET) signs is a borrower's token; an agency sees and works
only the loans placed with it. Real HTTP to a real worker on the dev server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from portal import create_app
from portal.auth import Authenticator, AuthError, AuthUnavailable, mint_token
from portal.devstaff import DevStaffIssuer
from portal.staff import StaffVerifier
from runtime.config import Settings
from tests.test_portal_support import (
    ALWAYS_OPEN,
    SECRET,
    bearer,
    eventually,
    free_port,
    portal_config,
    portal_worker,
    serve,
    staff_issuer,
    status_of,
)

pytestmark = pytest.mark.devserver

ROOT = Path(__file__).resolve().parents[1]
RUN = uuid.uuid4().hex[:6]
PLACED, HOME = f"ST{RUN}-placed", f"ST{RUN}-home"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A token signed by hand (HMAC-SHA256 with `key`, or unsigned): what an attacker can make."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = _b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key is not None else ""
    return f"{signing_input}.{signature}"


def claims(**extra: Any) -> dict[str, Any]:
    issuer = staff_issuer()
    now = int(time.time())
    return {"iss": issuer.issuer, "aud": issuer.audience, "sub": "ops-1", "role": "operator", "iat": now,
            "exp": now + 600} | extra


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def world(dev_env, tmp_path_factory):
    async with portal_worker(dev_env.client, tmp_path_factory.mktemp("staff")) as w:
        # At DPD 61 the loan is at the agency stage: warned, then placed 7 loan days later with the
        # policy's first agency, agency-east. Its days last a second (this test worker is no production
        # worker), so it is placed within seconds and stays placed until its legal stage, 30 s on.
        placed_policy = ALWAYS_OPEN | {"day_length_seconds": 1}
        w.handles = {PLACED: await w.start_loan(PLACED, dpd=61, policy=placed_policy),  # type: ignore[attr-defined]
                     HOME: await w.start_loan(HOME, dpd=10)}
        await eventually(lambda: status_of(w.handles[PLACED]), lambda s: s.agency is not None, timeout=30)  # type: ignore[attr-defined]
        yield w


@pytest.fixture(scope="module")
async def api(dev_env, world):
    app = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue), client=dev_env.client,
                     config=portal_config(rate_per_second=1000, rate_burst=1000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as http:
        yield http


async def test_staff_tokens_are_checked_as_an_oidc_relying_party_does(api, tmp_path):
    issuer = staff_issuer()
    url = f"/v1/loans/{HOME}"
    assert (await api.get(url, headers=bearer("ops-1", "operator"))).status_code == 200

    public_pem = issuer.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    public_jwk = issuer.jwks_path.read_text()
    stranger = DevStaffIssuer.create(tmp_path / "stranger")  # the right claims, another key
    impostor = DevStaffIssuer(stranger.folder, issuer.issuer, issuer.audience, stranger.algorithm, issuer.kid,
                              stranger.private_key)  # another key claiming our key's kid
    rs = DevStaffIssuer.create(tmp_path / "rs", algorithm="RS256")
    cases = {
        "wrong issuer": (issuer.token("ops-1", "operator", iss="https://idp.evil.example/"), "iss"),
        "wrong audience": (issuer.token("ops-1", "operator", aud="another-app"), "aud"),
        "no audience": (jwt.encode({k: v for k, v in claims().items() if k != "aud"}, issuer.private_key,
                                   algorithm="ES256", headers={"kid": issuer.kid}), "aud"),
        "expired": (issuer.token("ops-1", "operator", ttl_seconds=-120), "expired"),
        "alg none": (forge({"alg": "none", "typ": "JWT", "kid": issuer.kid}, claims(), None), "algorithm"),
        "HS256 with the public key as secret": (forge({"alg": "HS256", "kid": issuer.kid}, claims(), public_pem),
                                                "signature"),
        "HS256 with the JWKS as secret": (forge({"alg": "HS256", "kid": issuer.kid}, claims(), public_jwk.encode()),
                                          "signature"),
        "HS512": (forge({"alg": "HS512", "kid": issuer.kid}, claims(), b"x" * 64), "algorithm"),
        "another key": (stranger.token("ops-1", "operator"), "no key"),
        "another key, our kid": (impostor.token("ops-1", "operator"), "signature"),
        "RS256 header, our ES256 key": (jwt.encode(claims(), rs.private_key, algorithm="RS256",
                                                   headers={"kid": issuer.kid}), "signs ES256"),
        "no kid": (jwt.encode(claims(), issuer.private_key, algorithm="ES256"), "kid"),
        "no role": (jwt.encode({k: v for k, v in claims().items() if k != "role"}, issuer.private_key,
                               algorithm="ES256", headers={"kid": issuer.kid}), "role"),
        "staff token claiming borrower": (issuer.token("B-1", "borrower"), "role"),
        "agency without agency_id": (issuer.token("ag-1", "agency"), "agency_id"),
    }
    for name, (token, reason) in cases.items():
        r = await api.get(url, headers=auth(token))
        assert r.status_code == 401, (name, r.text)
        assert reason in r.json()["message"], (name, r.json())


async def test_a_borrower_key_can_never_make_a_staff_token(api):
    """Whoever holds PORTAL_JWT_SECRET (a borrower app's backend) signs borrowers' tokens, nothing more."""
    for role in ("agent", "agency", "operator"):
        token = mint_token(SECRET, "insider", role, 600, agency_id="agency-east")
        for method, path, body in (("GET", f"/v1/loans/{HOME}", None), ("POST", f"/v1/loans/{HOME}/pause", {"reason": "x"}),
                                   ("GET", "/v1/tasks", None)):
            r = await api.request(method, path, headers=auth(token), json=body)
            assert r.status_code == 401, (role, path, r.text)
            assert "cannot carry the role" in r.json()["message"]
    # and a staff verifier never takes the HS256 path: an operator token signed with the borrower key
    # and an RS/ES header is just a bad signature
    forged = forge({"alg": "ES256", "kid": staff_issuer().kid}, claims(), SECRET.encode())
    assert (await api.get(f"/v1/loans/{HOME}", headers=auth(forged))).status_code == 401
    assert (await status_of_events(api)) == []


async def status_of_events(api: httpx.AsyncClient) -> list[str]:
    r = await api.get(f"/v1/loans/{HOME}", headers=bearer("ops-1", "operator"))
    return [e["kind"] for e in r.json()["events"] if e["kind"] in ("paused", "resumed", "closed")]


async def test_an_agency_sees_and_works_only_loans_placed_with_it(api, world):
    placed = await status_of(world.handles[PLACED])
    assert placed.agency is not None and placed.agency.agency_id == "agency-east"
    east, west = bearer("east-7", "agency", agency_id="agency-east"), bearer("west-3", "agency", agency_id="agency-west")

    r = await api.get(f"/v1/loans/{PLACED}", headers=east)
    assert r.status_code == 200, r.text
    view = r.json()
    assert "events" not in view and view["agency"]["agency_id"] == "agency-east"
    assert view["agency"]["placement_id"] == placed.agency.placement_id and view["agency"]["until"]
    # another agency, or a loan placed with nobody: 403, nothing about the loan revealed
    for who, loan in ((west, PLACED), (east, HOME)):
        r = await api.get(f"/v1/loans/{loan}", headers=who)
        assert r.status_code == 403 and "placed with your agency" in r.json()["message"], r.text
        r = await api.post("/v1/tasks/t-1/outcome", headers=who, json={"loan_id": loan, "outcome": "no_answer"})
        assert r.status_code == 403, r.text
    # an agency works its placed loans; the operators' levers and the borrower's money are not its
    r = await api.post("/v1/tasks/no-such-task/outcome", headers=east, json={"loan_id": PLACED, "outcome": "no_answer"})
    assert r.status_code == 404
    for path, body in (("pause", {"reason": "x"}), ("write-off", {"reason": "x"}),
                       ("payments", {"payment_id": "p", "amount": "1.00"}),
                       ("payment-reversals", {"payment_id": "p", "reason": "x"})):
        r = await api.post(f"/v1/loans/{PLACED}/{path}", headers=east, json=body)
        assert r.status_code == 403, (path, r.text)
    # an agency's queue: its placements, from one visibility query; another agency's queue does not show them
    queue = await eventually(lambda: api.get("/v1/tasks", headers=east),
                             lambda r: any(t["loan_id"] == PLACED for t in r.json()["tasks"]))
    [mine] = [t for t in queue.json()["tasks"] if t["loan_id"] == PLACED]
    assert mine["kind"] == "agency" and mine["task_id"] == placed.agency.placement_id
    assert mine["assigned_to"] == "agency-east" and queue.json()["truncated"] is False
    others = (await api.get("/v1/tasks", headers=west)).json()["tasks"]
    assert all(t["loan_id"] != PLACED for t in others)
    assert (await api.get(f"/v1/loans/{PLACED}", headers=bearer("A-1", "agent"))).status_code == 200


def jwks_server(issuers: list[DevStaffIssuer]) -> tuple[FastAPI, list[int]]:
    """An identity provider's jwks_uri: serves the public keys of `issuers` (the list may change)."""
    app = FastAPI()
    hits: list[int] = []

    @app.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        hits.append(1)
        keys = [k for i in issuers for k in json.loads(i.jwks_path.read_text())["keys"]]
        return JSONResponse({"keys": keys})

    return app, hits


async def test_a_key_set_url_is_read_with_pyjwkclient_and_follows_rotation(tmp_path):
    first = DevStaffIssuer.create(tmp_path / "k1", issuer="https://idp.example/", audience="portal")
    second = DevStaffIssuer.create(tmp_path / "k2", issuer="https://idp.example/", audience="portal",
                                   algorithm="RS256")
    published = [first]
    app, hits = jwks_server(published)
    async with serve(app) as idp:
        verifier = StaffVerifier(f"{idp}/.well-known/jwks.json", "https://idp.example/", "portal",
                                 refresh_floor_seconds=0.5)
        authn = Authenticator(SECRET.encode(), verifier)
        who = await authn.averify(first.token("ops-1", "operator"))
        assert who.subject == "ops-1" and who.role == "operator" and hits == [1]
        await authn.averify(first.token("ops-2", "operator"))
        assert hits == [1], "keys are cached, not fetched per request"
        # the provider rotates: a token under the new key makes the portal re-read the set
        published.append(second)
        await asyncio.sleep(0.6)
        who = await authn.averify(second.token("ag-1", "agency", agency_id="agency-east"))
        assert who.agency_id == "agency-east" and len(hits) == 2
        # an unknown kid re-reads at most once per refresh floor (no fetch storm from forged kids)
        stranger = DevStaffIssuer.create(tmp_path / "k3", issuer="https://idp.example/", audience="portal")
        for _ in range(3):
            with pytest.raises(AuthError, match="no key"):
                await authn.averify(stranger.token("x", "operator"))
        assert len(hits) == 2
        await asyncio.sleep(0.6)
        with pytest.raises(AuthError, match="no key"):
            await authn.averify(stranger.token("x", "operator"))
        assert len(hits) == 3

    # the provider is down and the key is not known: 503 (AuthUnavailable), never a 401 for a good token
    down = StaffVerifier(f"http://127.0.0.1:{free_port()}/jwks.json", "https://idp.example/", "portal")
    with pytest.raises(AuthUnavailable):
        await Authenticator(SECRET.encode(), down).averify(first.token("ops-1", "operator"))


async def test_the_portal_with_a_key_set_url(dev_env, world, tmp_path):
    issuer = DevStaffIssuer.create(tmp_path / "idp", issuer="https://idp.example/", audience="portal")
    app, _ = jwks_server([issuer])
    async with serve(app) as idp:
        portal = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue), client=dev_env.client,
                            config=portal_config(staff_jwks=f"{idp}/.well-known/jwks.json",
                                                 staff_issuer="https://idp.example/", staff_audience="portal"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=portal), base_url="http://p") as http:
            r = await http.get(f"/v1/loans/{HOME}", headers=auth(issuer.token("ops-1", "operator")))
            assert r.status_code == 200, r.text
            # the tests' usual issuer is not this portal's: its tokens are refused
            assert (await http.get(f"/v1/loans/{HOME}", headers=bearer("ops-1", "operator"))).status_code == 401
    # without a key set configured, the portal takes borrowers only
    plain = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue), client=dev_env.client,
                       config=portal_config(staff_jwks=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://p") as http:
        r = await http.get(f"/v1/loans/{HOME}", headers=bearer("ops-1", "operator"))
        assert r.status_code == 401 and "PORTAL_STAFF_JWKS" in r.json()["message"]
        assert (await http.get(f"/v1/loans/{HOME}", headers=bearer(f"B-{HOME}"))).status_code == 200


def test_a_bad_key_set_file_stops_the_start(tmp_path):
    from portal.config import PortalConfigError

    for content, reason in (("{not json", "not JSON"), ('{"keys": []}', "no RS256 or ES256"),
                            ('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}', "no RS256 or ES256")):
        path = tmp_path / "jwks.json"
        path.write_text(content)
        with pytest.raises(PortalConfigError, match=reason):
            create_app(Settings(portal_jwt_secret=SECRET), config=portal_config(staff_jwks=str(path)))
    with pytest.raises(PortalConfigError, match="cannot read"):
        create_app(Settings(portal_jwt_secret=SECRET), config=portal_config(staff_jwks=str(tmp_path / "none.json")))


def test_the_token_helpers_from_the_command_line(tmp_path):
    """`python -m portal.auth` mints borrowers' tokens only; `python -m portal.devstaff` (dev only) makes
    a key set the portal can read and staff tokens it accepts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")} | {"PYTHONPATH": str(ROOT)}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env | extra, capture_output=True,
                              text=True, timeout=60)

    out = run("portal.auth", "--sub", "B-0001", PORTAL_JWT_SECRET=SECRET)
    assert out.returncode == 0
    borrower = Authenticator(SECRET.encode()).verify(out.stdout.strip())
    assert borrower.subject == "B-0001" and borrower.role == "borrower"
    out = run("portal.auth", "--sub", "ops-1", "--role", "operator", PORTAL_JWT_SECRET=SECRET)
    assert out.returncode == 2 and "--role" in out.stderr

    folder = tmp_path / "dev-staff"
    out = run("portal.devstaff", "init", str(folder))
    assert out.returncode == 0 and "DEV ONLY" in out.stdout and "PORTAL_STAFF_JWKS=" in out.stdout
    assert oct((folder / "staff-signing-key.pem").stat().st_mode & 0o777) == "0o600"
    settings = dict(line.split("=", 1) for line in (folder / "staff.env").read_text().splitlines()
                    if line and not line.startswith("#"))
    verifier = StaffVerifier(settings["PORTAL_STAFF_JWKS"], settings["PORTAL_STAFF_ISSUER"],
                             settings["PORTAL_STAFF_AUDIENCE"])
    out = run("portal.devstaff", "token", str(folder), "--sub", "east-7", "--role", "agency", "--agency-id", "agency-east")
    assert out.returncode == 0
    who = Authenticator(SECRET.encode(), verifier).verify(out.stdout.strip())
    assert (who.subject, who.role, who.agency_id) == ("east-7", "agency", "agency-east")
    out = run("portal.devstaff", "token", str(folder), "--sub", "east-7", "--role", "agency")
    assert out.returncode == 2 and "--agency-id" in out.stderr
    out = run("portal.devstaff", "token", str(tmp_path / "nothing"), "--sub", "x", "--role", "operator")
    assert out.returncode == 2 and "portal.devstaff init" in out.stderr
