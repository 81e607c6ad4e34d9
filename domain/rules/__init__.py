"""Contact rule packs (CN, US, UK) as pure, cited rules: one decision per contact attempt, and the
gates for the first negative bureau report and for agency placement / legal referral.

    from domain.rules import decide, narrow, PACKS
    limits = narrow("US", {"window_start": time(9)})
    decision = decide(attempt, loan, record, flags, limits, "US", now_local)

docs/compliance.md maps every rule to its source, its code and the test that proves it.
"""

from .engine import PACKS, Pack, bureau_gate, decide, escalation_gate
from .limits import BOUNDS, LIMIT_FIELDS, Limits, PackCode, narrow, pack_code
from .model import (
    AGENCY_WARNING,
    CREDIT_REPORT_WARNING,
    LEGAL_WARNING,
    OPT_OUT_CHANNELS,
    RETENTION_DAYS,
    Actor,
    BorrowerFlags,
    BreathingSpace,
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactRecord,
    LoanContext,
    PastContact,
    Purpose,
    Verdict,
    contact_channel,
)
from .uk import hardship_hold_until
from .us import CONVERSATION_OUTCOMES, counts_as_conversation, requires_opt_out_text, validation_period_end

__all__ = [
    "AGENCY_WARNING", "BOUNDS", "CONVERSATION_OUTCOMES", "CREDIT_REPORT_WARNING", "LEGAL_WARNING", "LIMIT_FIELDS", "OPT_OUT_CHANNELS", "PACKS",
    "RETENTION_DAYS", "Actor", "BorrowerFlags", "BreathingSpace", "ContactAttempt", "ContactChannel",
    "ContactDecision", "ContactRecord", "Limits", "LoanContext", "Pack", "PackCode", "PastContact", "Purpose",
    "Verdict", "bureau_gate", "contact_channel", "counts_as_conversation", "decide", "escalation_gate", "hardship_hold_until", "narrow",
    "pack_code", "requires_opt_out_text", "validation_period_end",
]
