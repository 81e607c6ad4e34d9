"""Pure core of the collections engine.

Pydantic models, Decimal money, policy, days past due and stages, allocation, schedules and
contact decisions. Nothing here does I/O or imports temporalio: every function is deterministic
and safe to call from workflow code.
"""

# models and policy refer to each other (the workflow input names the policy); importing models
# first lets either be imported on its own.
from . import models as _models  # noqa: E402,F401
