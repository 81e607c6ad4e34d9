"""Codec server for the Temporal Web UI and CLI: `python -m portal.codec_server`.

Speaks Temporal's remote codec protocol: `POST /encode` and `POST /decode` (also under
`/{namespace}/...`, for the CLI's `--codec-endpoint` templating), body and answer
`{"payloads": [{"metadata": {"<key>": "<base64>"}, "data": "<base64>"}]}` (proto3 JSON of
temporal.api.common.v1.Payloads). It decrypts with the same keys as the worker
(COLLECTIONS_ENCRYPTION_KEY, COLLECTIONS_ENCRYPTION_OLD_KEYS), so it only ever runs inside the bank.

Only operators may use it: every /encode and /decode needs an operator's staff token (role
"operator", RS256/ES256 from the staff identity provider, checked against PORTAL_STAFF_JWKS,
PORTAL_STAFF_ISSUER and PORTAL_STAFF_AUDIENCE as in the portal), either as `Authorization: Bearer
<jwt>` (the CLI's `--codec-auth`, or the UI's "pass access token" behind an identity provider) or
as the HttpOnly cookie that
`/login` sets (for the dev server's UI, which has no login of its own: turn on "include
cross-origin credentials" in the UI's codec settings). 401 without a valid token, 403 for another
role. CORS admits only COLLECTIONS_UI_ORIGIN (default http://localhost:8233; comma-separated list).

`collections demo` has no identity provider: with COLLECTIONS_DEMO=1 and no PORTAL_STAFF_JWKS (and
only then) the codec server also takes an HS256 operator token signed with PORTAL_JWT_SECRET, and
says so in its log at start. A borrower's token never opens it.

Environment: COLLECTIONS_CODEC_PORT (8081), COLLECTIONS_CODEC_HOST (127.0.0.1),
COLLECTIONS_CODEC_MAX_BODY_BYTES (4 MiB).
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from runtime.codec import EncryptionCodec, PayloadDecryptionError, codec_from_settings
from runtime.config import Settings

from .auth import Authenticator, AuthError, AuthUnavailable, Principal, Role
from .config import PortalConfig, PortalConfigError, require_jwt_secret
from .errors import error_response
from .limits import BodySizeLimitMiddleware

log = logging.getLogger("portal.codec")

COOKIE = "collections_codec_token"
DEFAULT_UI_ORIGIN = "http://localhost:8233"
DEFAULT_PORT = 8081
DEFAULT_MAX_BODY = 4 * 1024 * 1024

_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Codec server login</title></head>
<body><h1>Collections codec server</h1>
<p>Paste an operator token. The browser keeps it in an HttpOnly cookie for this server, which the
Temporal UI sends when "include cross-origin credentials" is on in its codec settings.</p>
<form method="post" action="login"><textarea name="token" rows="6" cols="80"></textarea><br>
<button type="submit">Log in</button></form>{message}</body></html>"""


def ui_origins(env: Mapping[str, str] | None = None) -> list[str]:
    raw = (os.environ if env is None else env).get("COLLECTIONS_UI_ORIGIN") or DEFAULT_UI_ORIGIN
    return [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]


def create_codec_app(
    settings: Settings | None = None,
    *,
    origins: list[str] | None = None,
    codec: EncryptionCodec | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    config: PortalConfig | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    config = config or PortalConfig.from_env()
    authenticator = _authenticator(settings, config)
    codec = codec or codec_from_settings(settings)
    origins = origins if origins is not None else ui_origins()

    app = FastAPI(title="Collections codec server", version="1.0.0", docs_url=None, redoc_url=None)

    async def authenticate(request: Request) -> Principal | Response:
        header = request.headers.get("authorization")
        token = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
            else:
                return error_response(401, "unauthorized", "Authorization header must be 'Bearer <token>'",
                                      headers={"WWW-Authenticate": "Bearer"})
        token = token or request.cookies.get(COOKIE)
        if not token:
            return error_response(401, "unauthorized", "an operator token is required "
                                  "(Authorization: Bearer <jwt>, or log in at /login)",
                                  headers={"WWW-Authenticate": "Bearer"})
        try:
            who = await authenticator.averify(token)
        except AuthError as exc:
            return error_response(401, "unauthorized", exc.reason,
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        except AuthUnavailable:
            return error_response(503, "unavailable", "the staff key set could not be read; retry later",
                                  headers={"Retry-After": "5"})
        if who.role is not Role.OPERATOR:
            return error_response(403, "forbidden", "only operators may use the codec server")
        return who

    async def transform(request: Request, action: str, namespace: str | None) -> Response:
        who = await authenticate(request)
        if isinstance(who, Response):
            return who
        try:
            body = await request.body()
            payloads = json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=False)
        except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
            return error_response(400, "bad_request",
                                  f'body must be {{"payloads": [...]}} in proto3 JSON: {exc}')
        try:
            if action == "decode":
                result = await codec.decode(payloads.payloads)
            else:
                result = await codec.encode(payloads.payloads)
        except PayloadDecryptionError as exc:
            return error_response(400, "cannot_decode", str(exc))
        log.info("codec %s by operator %s: %d payload(s), namespace %s",
                 action, who.subject, len(result), namespace or request.headers.get("x-namespace", "-"))
        out = json_format.MessageToDict(Payloads(payloads=result), preserving_proto_field_name=True)
        out.setdefault("payloads", [])
        return JSONResponse(out, headers={"Cache-Control": "no-store"})

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await transform(request, "encode", None)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await transform(request, "decode", None)

    @app.post("/{namespace}/encode")
    async def encode_ns(namespace: str, request: Request) -> Response:
        return await transform(request, "encode", namespace)

    @app.post("/{namespace}/decode")
    async def decode_ns(namespace: str, request: Request) -> Response:
        return await transform(request, "decode", namespace)

    @app.get("/login", response_class=HTMLResponse)
    async def login_page() -> HTMLResponse:
        return HTMLResponse(_LOGIN_PAGE.format(message=""))

    @app.post("/login")
    async def login(request: Request) -> Response:
        raw = await request.body()
        token = ""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                token = str(json.loads(raw or b"{}").get("token", ""))
            except (ValueError, AttributeError):
                token = ""
        else:
            token = (parse_qs(raw.decode("utf-8", errors="replace")).get("token") or [""])[0]
        token = token.strip()
        try:
            who = await authenticator.averify(token) if token else None
        except (AuthError, AuthUnavailable) as exc:
            who = None
            reason = exc.reason if isinstance(exc, AuthError) else "the staff key set could not be read"
        else:
            reason = "no token given"
        if who is None or who.role is not Role.OPERATOR:
            if who is not None:
                reason = "only operators may use the codec server"
            status = 401 if who is None else 403
            return HTMLResponse(_LOGIN_PAGE.format(message=f"<p><b>Refused:</b> {html.escape(reason)}</p>"),
                                status_code=status)
        response = HTMLResponse(_LOGIN_PAGE.format(
            message=f"<p>Logged in as operator {html.escape(who.subject)}.</p>"))
        response.set_cookie(
            COOKIE, token, max_age=max(0, who.expires_at - int(time.time())), httponly=True,
            samesite="strict", secure=request.url.scheme == "https", path="/",
        )
        log.info("codec login by operator %s", who.subject)
        return response

    @app.post("/logout")
    async def logout() -> Response:
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "key_ids": codec.key_ids}

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error")

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=True,
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        max_age=600,
    )
    return app


def _authenticator(settings: Settings, config: PortalConfig) -> Authenticator:
    from .staff import StaffConfigError, StaffVerifier

    secret = require_jwt_secret(settings.portal_jwt_secret)
    if config.staff_jwks:
        try:
            staff = StaffVerifier(config.staff_jwks, config.staff_issuer or "", config.staff_audience or "")
        except StaffConfigError as exc:
            raise PortalConfigError(str(exc)) from None
        return Authenticator(secret, staff)
    if config.demo:
        log.warning("COLLECTIONS_DEMO=1 and no PORTAL_STAFF_JWKS: operator tokens signed with PORTAL_JWT_SECRET "
                    "are accepted (the demo's; never in production)")
        return Authenticator(secret, None, hs256_staff_roles=True)
    log.warning("PORTAL_STAFF_JWKS is not set: no operator token can be verified, every request is refused")
    return Authenticator(secret, None)


def main() -> int:
    from runtime.codec import EncryptionConfigError

    from .config import PortalConfigError
    from .serve import serve

    env = os.environ
    try:
        settings = Settings.from_env()
        if not settings.encryption_key:
            raise PortalConfigError("COLLECTIONS_ENCRYPTION_KEY is not set: nothing to decode")
        port = int(env.get("COLLECTIONS_CODEC_PORT") or DEFAULT_PORT)
        max_body = int(env.get("COLLECTIONS_CODEC_MAX_BODY_BYTES") or DEFAULT_MAX_BODY)
        app = create_codec_app(settings, max_body_bytes=max_body)
    except (PortalConfigError, EncryptionConfigError, ValueError) as exc:
        print(f"codec server: cannot start: {exc}", file=sys.stderr)
        return 2
    host = env.get("COLLECTIONS_CODEC_HOST") or "127.0.0.1"
    return serve(app, host, port)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
