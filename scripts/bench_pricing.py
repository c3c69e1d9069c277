"""What a million delivered messages would cost on AWS, from the units and requests the bench
measured per message: DynamoDB on-demand throughput and SQS standard requests, nothing else.

Prices move: these are us-east-1 list prices as published when taken (PRICES_TAKEN), with the
page each comes from. Not included: storage (GB-month, and index storage), the free tiers (SQS's
first million requests a month), data transfer, backups, TTL deletes (free), CloudWatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# us-east-1, on-demand, in effect since 2024-11-01 (the on-demand throughput price cut):
# https://aws.amazon.com/dynamodb/pricing/on-demand/
DYNAMODB_WRITE_REQUEST_UNIT_USD_PER_MILLION = 0.625
DYNAMODB_READ_REQUEST_UNIT_USD_PER_MILLION = 0.125
# SQS standard queues, per million requests after the free tier; every 64 KB chunk of a payload is
# billed as one request: https://aws.amazon.com/sqs/pricing/
SQS_STANDARD_USD_PER_MILLION_REQUESTS = 0.40
# When the prices above were taken from those pages (given with the cost issue; not re-checked
# online by the bench, which never goes to the network).
PRICES_TAKEN = "2026-11-26"
PRICES_SOURCES = (
    "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "https://aws.amazon.com/sqs/pricing/",
)


def bill_per_million_messages(units: Mapping[str, Any]) -> dict[str, float]:
    """US dollars per million delivered messages from one units summary (per-message figures)."""
    writes = units["write_units_per_message_total"] * DYNAMODB_WRITE_REQUEST_UNIT_USD_PER_MILLION
    reads = units["read_units_per_message_total"] * DYNAMODB_READ_REQUEST_UNIT_USD_PER_MILLION
    sqs = units["sqs_billed_requests_per_message_total"] * SQS_STANDARD_USD_PER_MILLION_REQUESTS
    return {
        "dynamodb_writes": writes,
        "dynamodb_reads": reads,
        "sqs_requests": sqs,
        "total": writes + reads + sqs,
    }


def price_list() -> dict[str, Any]:
    return {
        "dynamodb_write_request_unit_usd_per_million": DYNAMODB_WRITE_REQUEST_UNIT_USD_PER_MILLION,
        "dynamodb_read_request_unit_usd_per_million": DYNAMODB_READ_REQUEST_UNIT_USD_PER_MILLION,
        "sqs_standard_usd_per_million_requests": SQS_STANDARD_USD_PER_MILLION_REQUESTS,
        "region": "us-east-1",
        "taken": PRICES_TAKEN,
        "in_effect_since": "2024-11-01 (DynamoDB on-demand)",
        "sources": list(PRICES_SOURCES),
        "not_included": "storage, free tiers, data transfer, backups, CloudWatch",
    }


def describe_prices() -> str:
    return (
        f"Prices (us-east-1, taken {PRICES_TAKEN}): DynamoDB on-demand "
        f"${DYNAMODB_WRITE_REQUEST_UNIT_USD_PER_MILLION} per million write request units and "
        f"${DYNAMODB_READ_REQUEST_UNIT_USD_PER_MILLION} per million read request units (in effect "
        f"since 2024-11-01, {PRICES_SOURCES[0]}); SQS standard "
        f"${SQS_STANDARD_USD_PER_MILLION_REQUESTS} per million requests, each 64 KB chunk of a "
        f"payload one request ({PRICES_SOURCES[1]}). Throughput only: storage, free tiers and "
        f"data transfer are not included."
    )
