
from domain.contract import SEARCH_ATTRIBUTES
from runtime.search_attributes import register_search_attributes


async def test_registration_is_idempotent_on_time_skipping_server(ts_env):
    # Registered once by the fixture; a second registration must not fail.
    await register_search_attributes(ts_env.client)
    assert set(SEARCH_ATTRIBUTES) == {"LoanId", "CollectionStage", "CollectionState", "DaysPastDue", "OutstandingAmount",
                                      "BorrowerId", "DueDate", "TaskAgents", "OpenTasks", "AgencyId"}
