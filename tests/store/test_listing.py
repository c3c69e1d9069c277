"""Newest-first listings over the sharded indexes."""

import pytest

from notifications.clock import ManualClock
from notifications.domain import Status, format_timestamp
from notifications.store import default_store, index_shards
from tests.factories import build_message

pytestmark = pytest.mark.usefixtures("aws")


def seed(count, *, status=Status.FAILED, producer_id="prd_1"):
    clock = ManualClock()
    store = default_store()
    ids = []
    for _ in range(count):
        clock.advance(1)
        message = build_message(
            status=status, producer_id=producer_id, created_at=format_timestamp(clock.now())
        )
        store.put_new(message)
        ids.append(message.id)
    return list(reversed(ids))  # newest first


def collect(**filters):
    store = default_store()
    pages, before = [], None
    while True:
        page, before = store.list_messages(limit=7, before=before, **filters)
        pages.append([m.id for m in page])
        if before is None:
            return pages


def test_pages_cover_every_message_once_newest_first_across_shards():
    expected = seed(3 * index_shards() + 5)
    pages = collect(status=Status.FAILED)
    assert [i for page in pages for i in page] == expected
    assert all(len(page) == 7 for page in pages[:-1])


def test_status_and_producer_filters():
    failed_a = seed(4, producer_id="prd_a")
    seed(3, status=Status.COMPLETED, producer_id="prd_a")
    seed(5, producer_id="prd_b")
    flat = [i for page in collect(status=Status.FAILED, producer_id="prd_a") for i in page]
    assert flat == failed_a
    assert len([i for page in collect(producer_id="prd_a") for i in page]) == 7
    assert default_store().count_status(Status.FAILED) == 9
    assert default_store().count_status(Status.COMPLETED) == 3


def test_exact_page_boundary_has_no_empty_trailing_page():
    seed(7)
    page, before = default_store().list_messages(status=Status.FAILED, limit=7)
    assert len(page) == 7
    if before is not None:  # a shard may not know it is exhausted; the next page must then be empty
        rest, after = default_store().list_messages(status=Status.FAILED, limit=7, before=before)
        assert rest == [] and after is None
