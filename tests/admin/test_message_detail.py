"""The message page: the request as it will be sent (secrets masked), metadata, the status
timeline with actors and reasons, the attempts, the next attempt."""

import dataclasses

from notifications.domain import Attempt, DeliveryRequest, HistoryEntry, Status
from notifications.store import default_store
from tests.factories import build_message, make_producer


def test_request_is_shown_as_sent_with_secrets_masked(console):
    message = build_message(status=Status.QUEUED, metadata={"order": 42, "source": "shop"})
    message = dataclasses.replace(
        message,
        request=DeliveryRequest(
            url="https://crm.example.com/contacts?list=7",
            method="PUT",
            headers={
                "Authorization": "Bearer vendor-bearer-1",
                "Cookie": "session=vendor-cookie-2",
                "X-Api-Key": "vendor-key-3",
                "X-Auth-Token": "vendor-token-4",
                "X-Client-Secret": "vendor-secret-5",
                "X-Signature": "vendor-signature-6",
                "X-Campaign": "autumn",
            },
            body='{"email":"a@example.com","tags":["x"]}',
            body_is_json=True,
        ),
        next_attempt_at="2026-11-25T16:00:00.000000Z",
    )
    default_store().put_new(message)

    html = console.get(f"/admin/herald/messages/{message.id}/").content.decode()

    for secret in [
        "vendor-bearer-1",
        "vendor-cookie-2",
        "vendor-key-3",
        "vendor-token-4",
        "vendor-secret-5",
        "vendor-signature-6",
    ]:
        assert secret not in html
    assert html.count("********") == 6
    assert "autumn" in html
    assert "PUT https://crm.example.com/contacts?list=7" in html
    # what Herald adds on the way out
    assert (
        f'<th scope="row" class="herald-mono">Herald-Message-Id</th><td class="herald-mono">{message.id}</td>'
        in html
    )
    assert "application/json" in html
    assert "&quot;email&quot;: &quot;a@example.com&quot;" in html  # indented JSON body
    assert "&quot;order&quot;: 42" in html  # metadata
    assert '<td id="next-attempt">2026-11-25 16:00:00</td>' in html
    assert "<title>Message" in html
    assert f"&rsaquo; {message.id}" in html  # breadcrumbs


def test_timeline_and_attempts(console, put_message):
    producer, _ = make_producer("billing")
    message = put_message(Status.PROCESSING, producer_id=producer.public_id)
    store = default_store()
    first = Attempt(
        number=1,
        started_at="2026-11-25T10:00:00.000000Z",
        duration_ms=87,
        outcome="retry",
        worker="worker-a",
        status_code=503,
        response_snippet="vendor says: maintenance",
    )
    second = Attempt(
        number=2,
        started_at="2026-11-25T10:05:00.000000Z",
        duration_ms=2001,
        outcome="permanent",
        worker="worker-b",
        error="ReadTimeoutError: read timed out",
    )
    # The attempts ride on the transitions that end each claim, as the worker writes them.
    steps = [
        (Status.PROCESSING, Status.QUEUED, first, {}),
        (Status.QUEUED, Status.PROCESSING, None, {}),
        (Status.PROCESSING, Status.FAILED, second, {"last_error": "HTTP 410: gone"}),
    ]
    for source, target, attempt, changes in steps:
        failed = store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=source,
            target=target,
            entry=HistoryEntry(source, target, "2026-11-25T10:06:00.000000Z", "worker:tests", "t"),
            attempt=attempt,
            changes=changes,
        )

    html = console.get(f"/admin/herald/messages/{failed.id}/").content.decode()

    timeline = html.split('id="message-history"', 1)[1].split('id="message-attempts"', 1)[0]
    assert timeline.count('class="history-entry"') == 6  # PENDING QUEUED PROCESSING, twice over
    assert "worker:tests" in timeline and "tests" in timeline
    attempts = html.split('id="message-attempts"', 1)[1]
    assert attempts.index("HTTP 503") < attempts.index("ReadTimeoutError: read timed out")
    assert "87 ms" in attempts and "2001 ms" in attempts
    assert "vendor says: maintenance" in attempts
    assert "worker-b" in attempts
    assert f"billing ({producer.public_id})" in html
    assert 'id="message-status">FAILED' in html
    assert '<td id="next-attempt">—</td>' in html  # a FAILED message has no next attempt
    assert "HTTP 410: gone" in html


def test_unknown_message_is_404(console):
    assert console.get("/admin/herald/messages/msg_nosuchthing/").status_code == 404
