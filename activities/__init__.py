"""Adapters to the outside world: thin, idempotent by the request's key, never importing workflows/.

One module per outside system, each with a small interface (Protocol), the embedded default that
writes to the outbox (COLLECTIONS_OUTBOX_DIR), and, for email and SMS/voice, real implementations
(SMTP, webhooks). The worker wires them; see docs/adapters.md.
"""

from ._common import (
    CONFIGURATION_ERROR,
    INVALID_REQUEST,
    PERMANENT_DELIVERY_FAILURE,
    TRANSIENT_DELIVERY_FAILURE,
)
from ._filing import Filed
from .agency import Agency, AgencyActivities, OutboxAgency
from .agents import AgentDesk, AgentTaskActivities, OutboxAgentDesk, OutboxVoiceBot, VoiceBot
from .borrower import BorrowerActivities, ContactGate
from .bureau import BureauActivities, CreditBureau, OutboxCreditBureau
from .email import EmailActivities
from .legal import LegalActivities, LegalDesk, OutboxLegalDesk, WorkflowTrail
from .messaging import (
    MessagingActivities,
    OutboxSmsProvider,
    OutboxVoiceProvider,
    SmsProvider,
    VoiceProvider,
    WebhookSmsProvider,
    WebhookVoiceProvider,
)
from .outbox import Outbox

__all__ = [
    "CONFIGURATION_ERROR",
    "INVALID_REQUEST",
    "PERMANENT_DELIVERY_FAILURE",
    "TRANSIENT_DELIVERY_FAILURE",
    "Agency",
    "AgencyActivities",
    "AgentDesk",
    "AgentTaskActivities",
    "BorrowerActivities",
    "ContactGate",
    "BureauActivities",
    "CreditBureau",
    "EmailActivities",
    "Filed",
    "LegalActivities",
    "LegalDesk",
    "WorkflowTrail",
    "MessagingActivities",
    "Outbox",
    "OutboxAgency",
    "OutboxAgentDesk",
    "OutboxVoiceBot",
    "VoiceBot",
    "OutboxCreditBureau",
    "OutboxLegalDesk",
    "OutboxSmsProvider",
    "OutboxVoiceProvider",
    "SmsProvider",
    "VoiceProvider",
    "WebhookSmsProvider",
    "WebhookVoiceProvider",
]
