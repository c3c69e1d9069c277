"""The table's definition: keys, the two sharded listing indexes, TTL on `expires_at`.

`manage.py bootstrap` creates it for development and tests; production creates the same
definition from infrastructure code.
"""

from __future__ import annotations

from notifications import aws
from notifications.store.items import PRODUCER_INDEX, STATUS_INDEX

KEY_ATTRIBUTES = ("pk", "sk", "gsi_status", "gsi_producer", "gsi_created")


def _index(name: str, partition_key: str) -> dict[str, object]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": partition_key, "KeyType": "HASH"},
            {"AttributeName": "gsi_created", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def ensure_table(table_name: str) -> bool:
    """Create the table and its indexes unless present. Returns True when it was created."""
    try:
        aws.call("dynamodb", "describe_table", TableName=table_name)
        return False
    except aws.AWSUnavailable as error:
        if error.code != "ResourceNotFoundException":
            raise
    try:
        aws.call(
            "dynamodb",
            "create_table",
            TableName=table_name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"} for name in KEY_ATTRIBUTES
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                _index(STATUS_INDEX, "gsi_status"),
                _index(PRODUCER_INDEX, "gsi_producer"),
            ],
        )
    except aws.AWSUnavailable as error:
        if error.code == "ResourceInUseException":
            return False  # created concurrently by another bootstrap
        raise
    aws.dynamodb().get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    aws.call(
        "dynamodb",
        "update_time_to_live",
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return True
