"""The table's definition: keys, the five sharded listing indexes, TTL on `expires_at`.

`manage.py bootstrap` creates it for development and tests; production creates the same
definition from deploy/cloudformation/herald.yaml (a test checks that the two agree).

Every index is keyed `<question>#<shard>` / `gsi_created` and carries only what its readers need:
the status index (the one whose key moves with every status change anyway) includes the few fields
the reconcile sweeps and counts decide on, so they read no message items; the others are KEYS_ONLY,
so a status change never writes them (their keys do not change and they project nothing that
does). A listing page reads its index, then the page's status items in one BatchGetItem.
"""

from __future__ import annotations

from typing import Any

from notifications import aws
from notifications.store.items import (
    CREATED_INDEX,
    HOST_INDEX,
    PRODUCER_INDEX,
    PRODUCER_STATUS_INDEX,
    STATUS_INDEX,
)

# The fields `iter_status` (reconcile, recounts) reads from the status index.
STATUS_INDEX_FIELDS = (
    "status",
    "producer_id",
    "target_url",
    "created_at",
    "updated_at",
    "attempt_count",
    "next_attempt_at",
    "lease_expires_at",
    "expires_at",
)

# index name -> partition key attribute; every index sorts on gsi_created.
INDEX_KEYS = {
    STATUS_INDEX: "gsi_status",
    PRODUCER_STATUS_INDEX: "gsi_producer_status",
    PRODUCER_INDEX: "gsi_producer",
    HOST_INDEX: "gsi_host",
    CREATED_INDEX: "gsi_all",
}
KEY_ATTRIBUTES = ("pk", "sk", *INDEX_KEYS.values(), "gsi_created")


def _projection(index: str) -> dict[str, Any]:
    if index == STATUS_INDEX:
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(STATUS_INDEX_FIELDS)}
    return {"ProjectionType": "KEYS_ONLY"}


def table_definition(table_name: str) -> dict[str, Any]:
    """The CreateTable request for the table (also what the template must describe)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in KEY_ATTRIBUTES
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": partition_key, "KeyType": "HASH"},
                    {"AttributeName": "gsi_created", "KeyType": "RANGE"},
                ],
                "Projection": _projection(index),
            }
            for index, partition_key in INDEX_KEYS.items()
        ],
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
        aws.call("dynamodb", "create_table", **table_definition(table_name))
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
