"""The opt-out link every message carries: `GET|POST /v1/unsubscribe/{token}`.

The worker signs `<COLLECTIONS_PORTAL_URL>/v1/unsubscribe/<token>` into every email (List-Unsubscribe,
RFC 2369, with List-Unsubscribe-Post for RFC 8058 one-click) and every SMS (runtime.links). The token
names the borrower and the channel and carries an HMAC keyed with COLLECTIONS_LINK_SECRET: it is the
credential, so these two routes take no bearer token.

- GET shows a small bilingual (zh/en) page with one button and changes nothing (mail scanners and
  link previews fetch links; a GET must never unsubscribe anyone).
- POST is the one-click: the body `List-Unsubscribe=One-Click`, form-encoded
  (`application/x-www-form-urlencoded` or `multipart/form-data`, as RFC 8058 lets the mailbox
  provider choose); the page's button posts the same. It signals `opt_out {"channel"}` to
  `borrower-<borrower_id>`, which is idempotent: a second click answers the same and changes nothing.

A link that does not verify is 404 and changes nothing. Without COLLECTIONS_LINK_SECRET (or with
one too short to use) both routes answer 503 naming the reason; the rest of the portal works.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from runtime.config import Settings
from runtime.links import LinkError, OptOutLinks

from .errors import ErrorBody, FieldError, Unavailable, error_response
from .gateway import BorrowerNotFound, LoanGateway
from .schemas import UnsubscribeAnswer

log = logging.getLogger("portal")

UNSUBSCRIBE_PREFIX = "/v1/unsubscribe/"
ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Token = Annotated[str, Path(min_length=1, max_length=512,
                            description="the signed token of the link in the message (borrower and channel)")]

CHANNEL_NAMES = {
    "sms": ("短信", "text messages (SMS)"),
    "email": ("电子邮件", "emails"),
    "voice": ("自动语音电话", "automated voice calls"),
    "call": ("催收人员的电话", "phone calls from our collectors"),
}

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never hand it on
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
}

_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>退订 · Unsubscribe</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}
h1{{font-size:1.3rem;margin:.2rem 0}}section{{margin:1.2rem 0}}
button{{font-size:1.1rem;padding:.6rem 1.4rem;border-radius:.4rem;border:1px solid #333;background:#fff;cursor:pointer}}</style>
</head><body><main>
<section lang="zh-CN">{zh}</section>
<section lang="en">{en}</section>
{form}</main></body></html>
"""

_FORM = (f'<form method="post"><input type="hidden" name="{ONE_CLICK_FIELD}" value="{ONE_CLICK_VALUE}">'
         '<button type="submit">退订 · Unsubscribe</button></form>')


def page(zh: str, en: str, status: int = 200, *, form: bool = False, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(zh=zh, en=en, form=_FORM if form else ""), status_code=status,
                        headers=PAGE_HEADERS | (headers or {}))


def _confirm_page(channel: str) -> HTMLResponse:
    zh, en = CHANNEL_NAMES[channel]
    return page(f"<h1>停止接收{zh}</h1><p>按下按钮后，我们将不再通过{zh}就您在本行的贷款与您联系。其他渠道不受影响，"
                "您的还款义务也不会改变。</p>",
                f"<h1>Stop {en}</h1><p>When you press the button we will no longer contact you by {en} about "
                "your loans with us. Other channels are not affected, and what you owe does not change.</p>",
                form=True)


def _done_page(answer: UnsubscribeAnswer) -> HTMLResponse:
    zh, en = CHANNEL_NAMES[answer.channel]
    if answer.status == "opted_out":
        return page(f"<h1>已退订</h1><p>我们将不再通过{zh}就您在本行的贷款与您联系。</p>",
                    f"<h1>Done</h1><p>We will no longer contact you by {en} about your loans with us.</p>")
    return page("<h1>无需退订</h1><p>您目前在本行没有未结清的贷款，我们不会就贷款向您发送消息。</p>",
                "<h1>Nothing to stop</h1><p>You have no open loan with us, so we send you no messages about one.</p>")


_INVALID = ("<h1>链接无效</h1><p>此退订链接无效。请使用我们消息中的完整链接。</p>",
            "<h1>This link is not valid</h1><p>Please use the whole link from our message.</p>")
_UNAVAILABLE = ("<h1>暂不可用</h1><p>退订服务暂时不可用，请稍后再试。</p>",
                "<h1>Not available right now</h1><p>Unsubscribing is not available right now; please try again "
                "later.</p>")


def opt_out_links(settings: Settings) -> tuple[OptOutLinks | None, str | None]:
    """The verifier of opt-out links, or why there is none (the two routes then answer 503)."""
    if not settings.link_secret:
        return None, ("COLLECTIONS_LINK_SECRET is not set: the portal cannot verify opt-out links; set it to the "
                      "worker's value")
    try:
        return OptOutLinks(settings.link_secret, settings.portal_url), None
    except ValueError as exc:
        return None, f"COLLECTIONS_LINK_SECRET cannot be used: {exc}"


def one_click_errors(content_type: str | None, body: bytes) -> tuple[int, list[FieldError]]:
    """What is wrong with an RFC 8058 one-click body: (415 or 422, the fields and reasons), or (200, [])."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in FORM_TYPES:
        return 415, [FieldError(field="body", reason=f"the body must be form-encoded ({' or '.join(FORM_TYPES)}): "
                                                     f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}")]
    try:
        fields = _form_fields(media, content_type or "", body)
    except ValueError as exc:
        return 422, [FieldError(field="body", reason=f"the form cannot be read: {exc}")]
    errors = [FieldError(field=name, reason=f"unknown field; the one-click body is {ONE_CLICK_FIELD}={ONE_CLICK_VALUE} "
                                            "only") for name, _ in fields if name != ONE_CLICK_FIELD]
    values = [value for name, value in fields if name == ONE_CLICK_FIELD]
    if not values:
        errors.append(FieldError(field=ONE_CLICK_FIELD, reason=f"required: {ONE_CLICK_FIELD}={ONE_CLICK_VALUE} "
                                                               "(RFC 8058)"))
    elif values != [ONE_CLICK_VALUE]:
        errors.append(FieldError(field=ONE_CLICK_FIELD, reason=f"must be {ONE_CLICK_VALUE!r}, once (RFC 8058)"))
    return (422 if errors else 200), errors


def _form_fields(media: str, content_type: str, body: bytes) -> list[tuple[str, str]]:
    if media == "application/x-www-form-urlencoded":
        text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True) if text else []
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", errors="replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise ValueError("not a multipart/form-data body with its boundary")
    fields = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_content_disposition() != "form-data" or not isinstance(name, str):
            raise ValueError("a part is not a named form-data field")
        payload = part.get_payload(decode=True)
        fields.append((name, payload.decode("utf-8") if isinstance(payload, bytes) else ""))
    return fields


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


_HTML = {"text/html": {"schema": {"type": "string"}}}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def install_unsubscribe(app: FastAPI, gateway: LoanGateway, links: OptOutLinks | None, unusable: str | None) -> None:
    if links is None:
        log.warning("opt-out links: %s; /v1/unsubscribe answers 503", unusable)

    @app.get(UNSUBSCRIBE_PREFIX + "{token}", response_class=HTMLResponse, tags=["borrowers"],
             summary="The opt-out link of a message: a page with one button (changes nothing)",
             description="No bearer token: the signed link is the credential. A bilingual (zh/en) page naming "
                         "the channel, whose button POSTs the one-click body to the same URL.",
             responses={200: {"content": _HTML, "description": "the page with the button"},
                        404: {"content": _HTML, "description": "the link does not verify"},
                        422: {"content": _JSON_ERROR, "description": "the link is malformed (too long)"},
                        429: {"content": _JSON_ERROR, "description": "too many requests for this link"},
                        503: {"content": _HTML, "description": "COLLECTIONS_LINK_SECRET is not configured"}})
    async def unsubscribe_page(token: Token) -> HTMLResponse:
        if links is None:
            return page(*_UNAVAILABLE, status=503)
        try:
            _, channel = links.verify(token)
        except LinkError:
            return page(*_INVALID, status=404)
        return _confirm_page(channel)

    @app.post(UNSUBSCRIBE_PREFIX + "{token}", response_model=UnsubscribeAnswer, tags=["borrowers"],
              summary="One-click opt-out (RFC 8058): signal opt_out for the link's channel to the borrower's entity",
              description="No bearer token: the signed link is the credential. Body `List-Unsubscribe=One-Click`, "
                          "form-encoded, as a mailbox provider sends it and the page's button posts it. Idempotent. "
                          "Answers HTML to a browser (`Accept: text/html`), JSON otherwise.",
              openapi_extra={"requestBody": {"required": True, "content": {
                  media: {"schema": {"type": "object", "additionalProperties": False, "required": [ONE_CLICK_FIELD],
                                     "properties": {ONE_CLICK_FIELD: {"type": "string", "enum": [ONE_CLICK_VALUE]}}}}
                  for media in FORM_TYPES}}},
              responses={200: {"content": _HTML, "description": "opted out (or nothing to stop: no open loan)"},
                         404: {"model": ErrorBody, "content": _HTML, "description": "the link does not verify"},
                         413: {"model": ErrorBody, "description": "request body too large"},
                         415: {"model": ErrorBody, "content": _HTML,
                               "description": "the body is not form-encoded"},
                         422: {"model": ErrorBody, "content": _HTML,
                               "description": f"the body is not {ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"},
                         429: {"model": ErrorBody, "description": "too many requests for this link"},
                         503: {"model": ErrorBody, "content": _HTML,
                               "description": "COLLECTIONS_LINK_SECRET is not configured, or Temporal did not answer"}})
    async def unsubscribe(token: Token, request: Request) -> Response:
        html = _wants_html(request)

        def refuse(status: int, code: str, message: str, zh_en: tuple[str, str],
                   fields: list[FieldError] | None = None, headers: dict[str, str] | None = None) -> Response:
            if html:
                return page(*zh_en, status=status, headers=headers)
            return error_response(status, code, message, fields, headers=PAGE_HEADERS | (headers or {}))

        if links is None:
            return refuse(503, "unavailable", unusable or "opt-out links are not configured", _UNAVAILABLE)
        try:
            borrower_id, channel = links.verify(token)
        except LinkError as exc:
            return refuse(404, "not_found", f"{exc}; nothing changed", _INVALID)
        status, errors = one_click_errors(request.headers.get("content-type"), await request.body())
        if errors:
            code = "unsupported_media_type" if status == 415 else "validation_error"
            summary = "; ".join(f"{e.field}: {e.reason}" for e in errors)
            return refuse(status, code, f"request is not valid: {summary}",
                          ("<h1>请求无效</h1><p>请使用我们消息中的退订按钮。</p>",
                           "<h1>Not a valid request</h1><p>Please use the button on the unsubscribe page.</p>"),
                          fields=errors)
        try:
            await gateway.borrower_signal(borrower_id, "opt_out", {"channel": channel})
            answer = UnsubscribeAnswer(channel=channel, status="opted_out",  # type: ignore[arg-type]
                                       message=f"opted out of {channel}: no more {channel} about any loan with us")
        except BorrowerNotFound:
            answer = UnsubscribeAnswer(channel=channel, status="no_open_loans",  # type: ignore[arg-type]
                                       message="no open loan with us: nothing is being sent")
        except Unavailable as exc:
            log.error("opt-out by link (%s) not recorded: %s", channel, exc.message)
            return refuse(503, "unavailable", exc.message, _UNAVAILABLE, headers=exc.headers)
        log.info("opt-out by link: borrower %s, channel %s (%s)", borrower_id, channel, answer.status)
        if html:
            return _done_page(answer)
        return JSONResponse(answer.model_dump(mode="json"), headers=PAGE_HEADERS)
