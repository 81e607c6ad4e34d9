"""The composition root wires every activity the adapters define, and picks providers from the
environment with clear errors for a bad configuration."""

from __future__ import annotations

import inspect

import pytest
from temporalio import activity

import activities
from activities import MessagingActivities, OutboxSmsProvider, WebhookSmsProvider, WebhookVoiceProvider
from runtime.config import Settings

LINK = "wiring-test-link-secret-123"
from worker import wiring
from worker.main import build_worker


def _defined_activity_names() -> set[str]:
    names = set()
    for _, cls in inspect.getmembers(activities, inspect.isclass):
        if not cls.__name__.endswith("Activities"):
            continue
        for _, fn in inspect.getmembers(cls, callable):
            defn = activity._Definition.from_callable(fn)  # noqa: SLF001
            if defn is not None and defn.name:
                names.add(defn.name)
    return names


def test_every_activity_the_adapters_define_is_registered(tmp_path):
    registered = wiring.activities(Settings(outbox_dir=tmp_path, link_secret=LINK))
    names = {activity._Definition.must_from_callable(fn).name for fn in registered}  # noqa: SLF001
    assert names == _defined_activity_names()
    assert {"send_email", "send_sms", "send_voice", "create_agent_task", "place_with_agency", "refer_to_legal",
            "report_to_credit_bureau"} <= names
    # Bound methods of instances (the adapters hold their configuration).
    assert all(inspect.ismethod(fn) for fn in registered)


def test_providers_default_to_the_outbox_and_webhooks_are_chosen_by_environment(tmp_path):
    adapters = wiring.build_adapters(Settings(outbox_dir=tmp_path, link_secret=LINK), wiring.Providers.from_env({}))
    messaging = next(a for a in adapters if isinstance(a, MessagingActivities))
    assert isinstance(messaging.sms, OutboxSmsProvider)

    env = {
        "COLLECTIONS_SMS_PROVIDER": "webhook",
        "COLLECTIONS_SMS_WEBHOOK_URL": "https://sms.bank.example/send",
        "COLLECTIONS_SMS_WEBHOOK_TOKEN": "t0k",
        "COLLECTIONS_VOICE_PROVIDER": "WEBHOOK",
        "COLLECTIONS_VOICE_WEBHOOK_URL": "http://127.0.0.1:9/dial",
    }
    adapters = wiring.build_adapters(Settings(outbox_dir=tmp_path, link_secret=LINK), wiring.Providers.from_env(env))
    messaging = next(a for a in adapters if isinstance(a, MessagingActivities))
    assert isinstance(messaging.sms, WebhookSmsProvider)
    assert messaging.sms.url == "https://sms.bank.example/send" and messaging.sms.token == "t0k"
    assert isinstance(messaging.voice, WebhookVoiceProvider) and messaging.voice.token is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COLLECTIONS_SMS_PROVIDER": "pigeon"}, "COLLECTIONS_SMS_PROVIDER must be 'outbox' or 'webhook'"),
        ({"COLLECTIONS_VOICE_PROVIDER": "webhook"}, "needs COLLECTIONS_VOICE_WEBHOOK_URL"),
        ({"COLLECTIONS_SMS_PROVIDER": "webhook", "COLLECTIONS_SMS_WEBHOOK_URL": "ftp://x"}, "http:// or https://"),
    ],
)
def test_bad_provider_configuration_is_named(env, message):
    with pytest.raises(wiring.WiringError, match=message):
        wiring.Providers.from_env(env)


async def test_worker_is_built_on_the_configured_task_queue(ts_env, tmp_path):
    settings = Settings(task_queue="wiring-test", outbox_dir=tmp_path, link_secret=LINK)
    worker = build_worker(ts_env.client, settings)
    assert worker.task_queue == "wiring-test"
    config = worker.config()
    from workflows import WORKFLOWS

    assert list(config["workflows"]) == list(WORKFLOWS)
    assert {"CollectionWorkflow", "RestructuringWorkflow"} <= {w.__name__ for w in config["workflows"]}
    assert config["max_concurrent_workflow_tasks"] == 2
