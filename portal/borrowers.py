"""The borrower entity's doors (contract v2): a borrower's status and flags on `borrower-<borrower_id>`,
a loan's dispute, and the contact requests of agents and agencies.

Who may do what (each refusal changes nothing):

| request | borrower | agent | agency | operator |
| --- | --- | --- | --- | --- |
| GET /v1/borrowers/{id} | themself | | | yes |
| opt-out, opt-in | themself | | | yes |
| flags: cease_contact | themself | | | yes |
| flags: breathing_space, bankruptcy, deceased; flags/clear | | | | yes |
| disputes | their own loan | | | yes |
| dispute-resolution | | | | yes |
| contact-requests | | any loan | a loan placed with it | |

A borrower may ask us to stop contacting them (FDCPA §805(c), the NIFA guidelines' respect for the
borrower's wishes), and so may set `cease_contact` for themself; the other flags rest on facts an
operator verifies (a court's bankruptcy reference, a death notification, a registered breathing
space), and lifting any flag is an operator's decision. The operator's id is the token's subject,
never the body's; it goes into the signal's body and every loan's `borrower_flag` event records it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from domain import contract
from domain.borrower import BorrowerStatus
from domain.models import ContactAnswer, ContactRequest, Dispute, DisputeResolved, LoanState

from .auth import Principal, Role
from .errors import Conflict, Forbidden, Unprocessable, fields_from_errors
from .gateway import LoanClosed, LoanGateway
from .routing import Access, BorrowerId, Doors, IdempotencyKey, LoanId, error_responses
from .schemas import (
    BorrowerSignalAccepted,
    ChannelRequest,
    ClearFlagRequest,
    ContactRequestBody,
    DisputeRequest,
    DisputeResolutionRequest,
    FlagRequest,
    SignalAccepted,
)

log = logging.getLogger("portal")

BORROWER_FLAGS = ("cease_contact",)
"""The flags a borrower may set for themself (the others: operators)."""


class NoDispute(Conflict):
    code = "no_dispute"


def install_borrower_routes(app: FastAPI, gateway: LoanGateway, doors: Doors) -> None:
    def borrower_access(*roles: Role) -> Any:
        async def check(borrower_id: BorrowerId, who: Principal = Depends(doors.principal)) -> Principal:
            if who.role not in roles:
                raise Forbidden(f"role {who.role.value!r} may not do this")
            if who.role is Role.BORROWER and who.subject != borrower_id:
                raise Forbidden("a borrower may only see and act for themself")
            return who

        return check

    # -- the borrower entity ---------------------------------------------------------------------

    @app.get("/v1/borrowers/{borrower_id}", response_model=BorrowerStatus, tags=["borrowers"],
             summary="The borrower entity's status: their loans, flags, today's contacts and rule pack",
             responses=error_responses(401, 403, 404, 422, 429, 503))
    async def get_borrower(borrower_id: BorrowerId,
                           who: Principal = Depends(borrower_access(Role.BORROWER, Role.OPERATOR))) -> JSONResponse:
        status = await gateway.borrower_status(borrower_id)
        return JSONResponse(status.model_dump(mode="json"))

    async def to_borrower(borrower_id: str, name: str, body: dict[str, Any], who: Principal) -> BorrowerSignalAccepted:
        operator = Doors.operator_id(who)
        await gateway.borrower_signal(borrower_id, name, body | ({"operator_id": operator} if operator else {}))
        log.info("%s %s: %s to borrower %s", who.role.value, who.subject, name, borrower_id)
        return BorrowerSignalAccepted(borrower_id=borrower_id, signal=name)

    accepted = {"status_code": 202, "response_model": BorrowerSignalAccepted, "tags": ["borrowers"],
                "responses": error_responses(401, 403, 404, 413, 422, 429, 503)}

    @app.post("/v1/borrowers/{borrower_id}/opt-out", **accepted,
              summary="No more contact on this channel, from any of the borrower's loans (signal opt_out)")
    async def post_opt_out(borrower_id: BorrowerId, body: ChannelRequest,
                           who: Principal = Depends(borrower_access(Role.BORROWER, Role.OPERATOR))) -> Any:
        return await to_borrower(borrower_id, "opt_out", {"channel": body.channel}, who)

    @app.post("/v1/borrowers/{borrower_id}/opt-in", **accepted,
              summary="Undo an opt-out of this channel (signal opt_in)")
    async def post_opt_in(borrower_id: BorrowerId, body: ChannelRequest,
                          who: Principal = Depends(borrower_access(Role.BORROWER, Role.OPERATOR))) -> Any:
        return await to_borrower(borrower_id, "opt_in", {"channel": body.channel}, who)

    @app.post("/v1/borrowers/{borrower_id}/flags", **accepted,
              summary="Set a flag on the borrower: cease_contact, breathing_space, bankruptcy or deceased "
                      "(the contract's signal of that name; a borrower may set cease_contact for themself)")
    async def post_flag(borrower_id: BorrowerId, body: Annotated[FlagRequest, Body(discriminator="flag")],
                        who: Principal = Depends(borrower_access(Role.BORROWER, Role.OPERATOR))) -> Any:
        if who.role is Role.BORROWER and body.flag not in BORROWER_FLAGS:
            raise Forbidden(f"{body.flag} is recorded by an operator, who verifies it; a borrower may ask us to "
                            "cease contact (flag cease_contact)")
        return await to_borrower(borrower_id, body.flag, body.model_dump(exclude={"flag"}, exclude_unset=True), who)

    @app.post("/v1/borrowers/{borrower_id}/flags/clear", **accepted,
              summary="Lift a flag (cease_contact, breathing_space, bankruptcy, deceased); an opt-out is "
                      "lifted by opt-in")
    async def post_clear_flag(borrower_id: BorrowerId, body: ClearFlagRequest,
                              who: Principal = Depends(borrower_access(Role.OPERATOR))) -> Any:
        return await to_borrower(borrower_id, contract.SIGNAL_CLEAR_FLAG, {"flag": body.flag, "reason": body.reason},
                                 who)

    # -- a loan's dispute ------------------------------------------------------------------------

    async def open_status(loan_id: str, what: str) -> Any:
        status = await gateway.status(loan_id)
        if status.state == LoanState.CLOSED:
            raise LoanClosed(f"loan {loan_id!r} is closed"
                             f"{f' ({status.outcome.value})' if status.outcome else ''}; {what}")
        return status

    async def to_loan(loan_id: str, name: str, body: Any, who: Principal) -> SignalAccepted:
        await gateway.signal(loan_id, name, body)
        log.info("%s %s: %s on loan %s", who.role.value, who.subject, name, loan_id)
        return SignalAccepted(loan_id=loan_id, signal=name)

    @app.post("/v1/loans/{loan_id}/disputes", status_code=202, response_model=SignalAccepted, tags=["loans"],
              summary="Dispute this debt: collection contact, escalation and negative reporting stop until "
                      "it is resolved (signal dispute; again while open: recorded, no change)",
              responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_dispute(loan_id: LoanId, body: DisputeRequest,
                           access: Access = Depends(doors.loan_access(Role.BORROWER, Role.OPERATOR))) -> Any:
        await open_status(loan_id, "a dispute needs an open loan")
        return await to_loan(loan_id, contract.SIGNAL_DISPUTE,
                             Dispute(reason=body.reason, operator_id=Doors.operator_id(access.who)), access.who)

    @app.post("/v1/loans/{loan_id}/dispute-resolution", status_code=202, response_model=SignalAccepted,
              tags=["operators"],
              summary="End the loan's dispute: upheld closes the loan written off (reason `dispute upheld`), "
                      "not upheld resumes collection (signal dispute_resolved)",
              responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503,
                                        e409="the loan is closed, or no dispute is open on it"))
    async def post_dispute_resolution(loan_id: LoanId, body: DisputeResolutionRequest,
                                      access: Access = Depends(doors.loan_access(Role.OPERATOR))) -> Any:
        status = await open_status(loan_id, "nothing to resolve")
        if status.dispute is None:
            raise NoDispute(f"no dispute is open on loan {loan_id!r}; nothing to resolve")
        return await to_loan(loan_id, contract.SIGNAL_DISPUTE_RESOLVED,
                             DisputeResolved(upheld=body.upheld, note=body.note, operator_id=access.who.subject),
                             access.who)

    # -- agents and agencies ask before they dial or visit -------------------------------------------

    @app.post("/v1/loans/{loan_id}/contact-requests", response_model=ContactAnswer, tags=["agents"],
              summary="May I call or visit now? The borrower's entity decides against the person's one contact "
                      "record; an allowed call or visit counts against the caps at once",
              responses=error_responses(
                  401, 403, 404, 409, 413, 422, 429, 501, 503,
                  e409="the loan is closed, or it predates the borrower entity and takes no contact requests"))
    async def post_contact_request(loan_id: LoanId, body: ContactRequestBody, idempotency_key: IdempotencyKey = None,
                                   access: Access = Depends(doors.loan_access(Role.AGENT, Role.AGENCY))) -> Any:
        who = access.who
        agent_id = f"{who.agency_id}/{who.subject}" if who.role is Role.AGENCY else who.subject
        try:
            request = ContactRequest(channel=body.channel, agent_id=agent_id, actor=who.role.value)
        except ValidationError as exc:  # an agency's agent id longer than the model's 128 characters
            raise Unprocessable("contact request is not valid",
                                fields=fields_from_errors(list(exc.errors()), drop_prefix=())) from None
        update_id = f"portal-contact:{agent_id}:{idempotency_key}" if idempotency_key else None
        answer = await gateway.request_contact(loan_id, request, update_id=update_id)
        log.info("%s %s asks to %s on loan %s: %s (%s)", who.role.value, agent_id, body.channel, loan_id,
                 "allowed" if answer.allowed else "not allowed", answer.rule)
        return JSONResponse(answer.model_dump(mode="json"))
