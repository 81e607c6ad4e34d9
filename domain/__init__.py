"""Pure core of the collections engine.

Pydantic models, Decimal money, policy, days past due and stages, allocation, schedules and
contact decisions. Nothing here does I/O or imports temporalio: every function is deterministic
and safe to call from workflow code.
"""

