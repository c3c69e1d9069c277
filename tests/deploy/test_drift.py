"""`manage.py bootstrap` (development, tests) and deploy/cloudformation/herald.yaml (production)
create the same table and queues, so the two cannot drift apart: both are created in the stand-in
and described the same way. The template's parameter defaults are Herald's setting defaults, and
its queue timings fit Herald's retries."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from notifications.queue import MAX_DELAY_SECONDS
from tests.deploy.support import (
    IGNORE_UNMODELLED_ALARMS,
    deploy_stack,
    differences,
    load_template,
    queues_shape,
    table_shape,
)
from tests.e2e.support import ROOT, clean_environment

pytestmark = pytest.mark.filterwarnings(IGNORE_UNMODELLED_ALARMS)

SQS_MAX_RETENTION_SECONDS = 14 * 24 * 3600
DEFAULTS_READ = (
    "DYNAMODB_TABLE",
    "SQS_QUEUE_NAME",
    "SQS_DLQ_NAME",
    "SQS_MAX_RECEIVE_COUNT",
    "SQS_VISIBILITY_TIMEOUT",
    "RETRY_MAX_AGE",
)


@pytest.fixture(scope="module")
def herald_defaults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The settings as config/settings.py defaults them: read by a fresh Python with none of them
    in its environment and no `.env` file."""
    env = clean_environment(tmp_path_factory.mktemp("defaults"))
    for name in DEFAULTS_READ:
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {DEFAULTS_READ!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_bootstrap_and_the_template_create_the_same_table_and_queues(standin, settings):
    # The template with the settings' values (whatever this environment sets), under other names.
    outputs = deploy_stack(
        standin,
        "herald-drift",
        TableName="template-messages",
        QueueName="template-deliveries",
        MaxReceiveCount=settings.SQS_MAX_RECEIVE_COUNT,
        VisibilityTimeout=settings.SQS_VISIBILITY_TIMEOUT,
    )
    settings.DYNAMODB_TABLE = "bootstrap-messages"
    settings.SQS_QUEUE_NAME = "bootstrap-deliveries"
    settings.SQS_DLQ_NAME = "bootstrap-deliveries-dlq"
    call_command("bootstrap", stdout=StringIO())

    from_bootstrap = {
        "table": table_shape("bootstrap-messages"),
        **queues_shape("bootstrap-deliveries", "bootstrap-deliveries-dlq"),
    }
    from_template = {
        "table": table_shape(outputs["TableName"]),
        **queues_shape(outputs["QueueName"], outputs["DeadLetterQueueName"]),
    }
    # moto's CloudFormation ignores TimeToLiveSpecification (and point-in-time recovery and
    # encryption, which bootstrap does not set): the template's own word stands for it.
    ttl = load_template()["Resources"]["MessageTable"]["Properties"]["TimeToLiveSpecification"]
    from_template["table"]["TimeToLiveAttribute"] = ttl["AttributeName"] if ttl["Enabled"] else None

    found = differences(from_bootstrap, from_template)
    assert not found, (
        "`manage.py bootstrap` and deploy/cloudformation/herald.yaml no longer create the same "
        "resources:\n  " + "\n  ".join(found) + "\n"
        "The table is defined twice: notifications/store/schema.py (ensure_table) and the "
        "template's MessageTable (its AttributeDefinitions, KeySchema and GlobalSecondaryIndexes "
        "with their Projection). The queues: notifications/queue.py (ensure_queues) and the "
        "template's WorkQueue and DeadLetterQueue. Change the side that is behind; if the code "
        "now makes other AWS calls, update the template's IAM policies and docs/deploy.md too."
    )


def test_the_templates_parameter_defaults_are_heralds_setting_defaults(herald_defaults):
    parameters = load_template()["Parameters"]
    queue_name = parameters["QueueName"]["Default"]
    from_template = {
        "DYNAMODB_TABLE": parameters["TableName"]["Default"],
        "SQS_QUEUE_NAME": queue_name,
        # Empty means <QueueName>-dlq, as in Herald's settings.
        "SQS_DLQ_NAME": parameters["DeadLetterQueueName"]["Default"] or f"{queue_name}-dlq",
        "SQS_MAX_RECEIVE_COUNT": parameters["MaxReceiveCount"]["Default"],
        "SQS_VISIBILITY_TIMEOUT": parameters["VisibilityTimeout"]["Default"],
    }
    settings_defaults = {name: herald_defaults[name] for name in from_template}
    assert from_template == settings_defaults, (
        "deploy/cloudformation/herald.yaml's parameter defaults differ from config/settings.py's "
        "defaults: change the template's Default to the setting's."
    )


def test_queue_timings_fit_heralds_retries(herald_defaults):
    resources = load_template()["Resources"]
    work = resources["WorkQueue"]["Properties"]["MessageRetentionPeriod"]
    dead = resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    # SQS keeps work longer than a retry budget lasts, and a dead letter (which keeps the age it
    # had in the work queue) longer still.
    assert herald_defaults["RETRY_MAX_AGE"] < work < dead <= SQS_MAX_RETENTION_SECONDS
    # A chained backoff waits up to MAX_DELAY_SECONDS in SQS: that alone must not raise the alarm.
    assert load_template()["Parameters"]["OldestMessageAlarmSeconds"]["Default"] > MAX_DELAY_SECONDS
