"""A listing page costs in proportion to the page, not to the table.

One producer's messages, mostly COMPLETED with a few in every other status, at 10 and at thousands:
each listing the API, the console and reconcile make reads (as DynamoDB reports: `ScannedCount` of
every Query, items returned by every BatchGetItem) at most a small multiple of the page size, and
about the same number at both sizes.
"""

from collections import Counter

import pytest
from rest_framework.test import APIClient

from notifications import aws, selectors
from notifications.domain import Status
from notifications.services import messages_reconcile
from notifications.store import index_shards
from tests.factories import make_producer
from tests.support.seeding import seed_quickly

LARGE = 3_000
SHARE = {
    Status.COMPLETED: 960,
    Status.FAILED: 10,
    Status.QUEUED: 10,
    Status.PENDING: 10,
    Status.PROCESSING: 10,
}
LIMIT = 5


class ItemsRead:
    """Items DynamoDB read for the calls made while counting: the ScannedCount of each Query
    (what it reads and bills, before any filter) and the items of each BatchGetItem."""

    def __init__(self):
        self.client = aws.dynamodb()
        self.read = Counter()

    def _after(self, parsed, model, **_):
        if model.name == "Query":
            self.read["query"] += parsed.get("ScannedCount", 0)
        elif model.name == "BatchGetItem":
            self.read["batch_get"] += sum(len(items) for items in parsed["Responses"].values())

    def __call__(self, action):
        self.read = Counter()
        self.client.meta.events.register("after-call.dynamodb.*", self._after)
        try:
            action()
        finally:
            self.client.meta.events.unregister("after-call.dynamodb.*", self._after)
        return self.read


def listings(api, producer_id):
    """Every listing the issue names, as its caller makes it."""

    def api_list(query):
        def call():
            response = api.get(f"/api/v1/messages?limit={LIMIT}{query}")
            assert response.status_code == 200, response.content
            assert len(response.json()["results"]) <= LIMIT

        return call

    def console(**filters):
        return lambda: selectors.message_browse(limit=LIMIT, **filters)

    return {
        "api by producer": api_list(""),
        "api by producer, PENDING": api_list("&status=PENDING"),
        "api by producer, FAILED": api_list("&status=FAILED"),
        "console all statuses": console(),
        "console by status PROCESSING": console(status=Status.PROCESSING),
        "console by status COMPLETED": console(status=Status.COMPLETED),
        "console by producer": console(producer_id=producer_id),
        "console by producer and status": console(producer_id=producer_id, status=Status.QUEUED),
        "console target host": console(search="vendor3.example.com"),
        "console target host and status": console(
            search="vendor3.example.com", status=Status.FAILED
        ),
    }


def measure(count):
    producer, key = make_producer(f"scale-{count}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    seeded = seed_quickly(count, SHARE, producers=(producer.public_id,), seed=count)
    counter = ItemsRead()
    reads = {name: counter(action) for name, action in listings(api, producer.public_id).items()}
    reads["reconcile"] = counter(lambda: messages_reconcile(older_than=3600))
    non_terminal = sum(1 for m in seeded if m.status not in (Status.COMPLETED, Status.FAILED))
    return reads, non_terminal


@pytest.mark.timeout(300)
def test_every_listing_reads_in_proportion_to_its_page(aws, db):
    small, _ = measure(10)
    # The large run shares the table (its own producer): the unscoped listings see both.
    large, non_terminal = measure(LARGE)
    page_bound = LIMIT * index_shards()  # one Query page of `limit` keys per shard

    for name, read in large.items():
        if name == "reconcile":
            continue
        assert read["query"] <= page_bound, (name, read)
        assert read["batch_get"] <= LIMIT, (name, read)
        # About the same at 10 messages and at thousands (the small table holds fewer than a page
        # per shard, so it may read less; never the other way round by more than a page).
        assert read["query"] <= small[name]["query"] + page_bound, (name, small[name], read)

    # The sweeps read the status index's non-terminal partitions only: the messages still going,
    # never the COMPLETED and FAILED ones (nearly all of the table). A PENDING message it queues is
    # read again by the QUEUED sweep that follows: at most twice each.
    reconcile = large["reconcile"]
    assert reconcile["query"] <= 2 * non_terminal + small["reconcile"]["query"], reconcile
    assert reconcile["query"] < LARGE // 10
