"""bootstrap, create_producer and rotate_api_key."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from notifications import aws as aws_module
from notifications.models import Producer, hash_api_key


def test_bootstrap_is_idempotent(aws, settings):
    settings.DYNAMODB_TABLE = "bootstrap-table"
    settings.SQS_QUEUE_NAME = "bootstrap-queue"
    settings.SQS_DLQ_NAME = "bootstrap-queue-dlq"
    first, second = StringIO(), StringIO()
    call_command("bootstrap", stdout=first)
    call_command("bootstrap", stdout=second)
    assert "created" in first.getvalue()
    assert "already present" in second.getvalue()

    table = aws_module.dynamodb().describe_table(TableName="bootstrap-table")["Table"]
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == {
        "status-index",
        "producer-status-index",
        "producer-index",
        "host-index",
        "created-index",
    }
    sqs = aws_module.sqs()
    url = sqs.get_queue_url(QueueName="bootstrap-queue")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    assert "bootstrap-queue-dlq" in attributes["Attributes"]["RedrivePolicy"]


@pytest.mark.django_db
def test_create_producer_prints_key_last_and_stores_only_its_hash():
    out = StringIO()
    call_command("create_producer", "crm-sync", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    producer = Producer.objects.get(name="crm-sync")
    assert key.startswith("hrld_")
    assert producer.key_hash == hash_api_key(key)
    assert key not in (producer.key_hash, producer.key_id)
    assert producer.check_api_key(key)


@pytest.mark.django_db
def test_create_producer_refuses_duplicates():
    call_command("create_producer", "dup", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("create_producer", "dup", stdout=StringIO())


@pytest.mark.django_db
def test_rotate_api_key_can_keep_the_old_key_for_hours():
    out = StringIO()
    call_command("create_producer", "rotating", stdout=out)
    old_key = out.getvalue().splitlines()[-1]
    out = StringIO()
    call_command("rotate_api_key", "rotating", "--keep-old-hours", "2", stdout=out)
    new_key = out.getvalue().splitlines()[-1]
    producer = Producer.objects.get(name="rotating")
    assert producer.check_api_key(new_key) and producer.check_api_key(old_key)
    after = producer.previous_key_valid_until + timedelta(seconds=1)
    assert not producer.check_api_key(old_key, now=after)
    call_command("rotate_api_key", "rotating", stdout=StringIO())
    producer.refresh_from_db()
    assert not producer.check_api_key(new_key)
