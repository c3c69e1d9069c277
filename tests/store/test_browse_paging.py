"""The console's cursor paging leads on in both directions even when every row of a page is left
out: a host search with a status reads the host's index, whose pages may hold only other
statuses. The cursors come from the index keys a page read, not from its rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifications import aws, selectors
from notifications.domain import Status, format_timestamp
from notifications.store import default_store
from notifications.store.items import message_to_items
from tests.factories import build_message

HOST = "paging.example.com"


def put(statuses: list[Status]) -> list[str]:
    """Messages to HOST with these statuses, oldest first, a minute apart; returns their ids."""
    start = datetime.now(UTC) - timedelta(hours=1)
    table = default_store().table_name
    ids = []
    for n, status in enumerate(statuses):
        message = build_message(
            status=status,
            created_at=format_timestamp(start + timedelta(minutes=n)),
            url=f"https://{HOST}/hook",
        )
        status_item, request_item = message_to_items(message, aux_expires_at=None)
        for item in (status_item, request_item):
            if item:
                aws.dynamodb().put_item(TableName=table, Item=item)
        ids.append(message.id)
    return ids


def browse(cursor: str | None = None) -> selectors.MessageBrowsePage:
    return selectors.message_browse(status=Status.FAILED, search=HOST, limit=2, cursor=cursor)


def ids_of(page: selectors.MessageBrowsePage) -> list[str]:
    return [message.id for message in page.messages]


def test_a_page_whose_rows_are_all_left_out_still_leads_older_and_newer(aws, db, settings):
    settings.DYNAMODB_INDEX_SHARDS = 1  # one partition: the pages below are exactly these
    failed_old, *_, failed_new = put([Status.FAILED] + [Status.COMPLETED] * 4 + [Status.FAILED])

    first = browse()
    assert ids_of(first) == [failed_new]
    assert first.older_cursor is not None

    middle = browse(first.older_cursor)  # two COMPLETED: nothing to show
    assert ids_of(middle) == []
    assert middle.older_cursor is not None and middle.newer_cursor is not None

    last = browse(middle.older_cursor)
    assert ids_of(last) == [failed_old]
    assert last.older_cursor is None
    assert last.newer_cursor is not None

    # Back the other way: through the empty page again, to the newest.
    back = browse(last.newer_cursor)
    assert ids_of(back) == []
    assert back.older_cursor is not None  # was None: a dead end
    assert back.newer_cursor is not None
    assert ids_of(browse(back.older_cursor)) == [failed_old]
    assert ids_of(browse(back.newer_cursor)) == [failed_new]
