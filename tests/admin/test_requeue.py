"""Requeue from the console: a confirmation page (GET), then a POST with CSRF that records the
operator in the message history and in Django's admin log, and says what changed."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from notifications.domain import Status
from notifications.queue import default_queue
from notifications.store import default_store


def flashes(response):
    return [str(message) for message in response.context["messages"]]


def operator_entries(message_id):
    return [e for e in default_store().get(message_id).history if e.actor.startswith("operator:")]


def test_confirmation_page_then_requeue_one(console, operator, put_message):
    failed = put_message(Status.FAILED, error="HTTP 503: vendor down")
    url = f"/admin/herald/messages/{failed.id}/requeue/"

    confirm = console.get(url)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html
    assert "HTTP 503: vendor down" in html and ">requeue</td>" in html
    assert default_store().get(failed.id).status == Status.FAILED  # GET changes nothing

    response = console.post(url, {"reason": "vendor back up"}, follow=True)

    assert response.redirect_chain == [(f"/admin/herald/messages/{failed.id}/", 302)]
    assert flashes(response) == ["1 requeued."]
    message = default_store().get(failed.id)
    assert message.status == Status.QUEUED
    assert message.budget_attempts == 0
    (entry,) = operator_entries(failed.id)
    assert (entry.from_status, entry.to_status) == (Status.FAILED, Status.QUEUED)
    assert entry.actor == f"operator:{operator.username}"
    assert entry.reason == "vendor back up"
    assert default_queue().depth()["visible"] == 1
    (log,) = LogEntry.objects.all()
    assert (log.user, log.object_id, log.action_flag) == (operator, failed.id, CHANGE)
    assert log.content_type.app_label == "notifications"
    assert log.change_message == "Requeued (FAILED → QUEUED): vendor back up"


def test_double_submit_requeues_once(console, put_message):
    failed = put_message(Status.FAILED)
    url = f"/admin/herald/messages/{failed.id}/requeue/"

    first = console.post(url, {"reason": ""}, follow=True)
    second = console.post(url, {"reason": ""}, follow=True)

    assert flashes(first) == ["1 requeued."]
    assert flashes(second) == ["0 requeued, 1 skipped: not FAILED."]
    (entry,) = operator_entries(failed.id)
    assert entry.reason == "requeued in the operator console"
    assert LogEntry.objects.count() == 1
    assert default_queue().depth()["visible"] == 1


def test_bulk_confirmation_lists_what_will_and_will_not_be_requeued(console, put_message):
    failed = [put_message(Status.FAILED) for _ in range(2)]
    completed = put_message(Status.COMPLETED)

    response = console.get(
        "/admin/herald/messages/requeue/",
        {"ids": [failed[0].id, failed[1].id, completed.id, "msg_gone"], "filters": "status=FAILED"},
    )

    html = response.content.decode()
    assert html.count('class="requeue-target"') == 4
    assert html.count(">requeue</td>") == 2
    assert html.count(">skip</td>") == 2
    assert "not found" in html
    assert '<input type="hidden" name="filters" value="status=FAILED"' in html
    assert all(default_store().get(m.id).status == Status.FAILED for m in failed)


def test_bulk_requeue_reports_requeued_and_skipped(console, operator, put_message):
    failed = [put_message(Status.FAILED) for _ in range(3)]
    completed = put_message(Status.COMPLETED)
    ids = [m.id for m in failed] + [completed.id]

    response = console.post(
        "/admin/herald/messages/requeue/",
        {"ids": ids, "reason": "vendor outage over", "filters": "status=FAILED&q=x.example.com"},
        follow=True,
    )

    assert response.redirect_chain == [
        ("/admin/herald/messages/?status=FAILED&q=x.example.com", 302)
    ]
    assert flashes(response) == ["3 requeued, 1 skipped: not FAILED."]
    assert [default_store().get(m.id).status for m in failed] == [Status.QUEUED] * 3
    assert default_store().get(completed.id).status == Status.COMPLETED
    assert sorted(LogEntry.objects.values_list("object_id", flat=True)) == sorted(
        m.id for m in failed
    )
    assert {e.user for e in LogEntry.objects.all()} == {operator}

    again = console.post("/admin/herald/messages/requeue/", {"ids": ids, "reason": ""}, follow=True)
    assert flashes(again) == ["0 requeued, 4 skipped: not FAILED."]
    assert LogEntry.objects.count() == 3


def test_bulk_without_a_selection_goes_back_with_an_error(console):
    response = console.get(
        "/admin/herald/messages/requeue/", {"filters": "status=FAILED"}, follow=True
    )
    assert response.redirect_chain == [("/admin/herald/messages/?status=FAILED", 302)]
    assert flashes(response) == ["Select at least one message."]


def test_bulk_refuses_malformed_ids(console, put_message):
    failed = put_message(Status.FAILED)
    response = console.post(
        "/admin/herald/messages/requeue/", {"ids": [failed.id, "../etc"]}, follow=True
    )
    assert flashes(response) == ["'../etc' is not a message id."]
    assert default_store().get(failed.id).status == Status.FAILED


def test_unknown_message(console):
    assert console.get("/admin/herald/messages/msg_nope/requeue/").status_code == 404
    response = console.post("/admin/herald/messages/msg_nope/requeue/", {}, follow=True)
    assert response.redirect_chain == [("/admin/herald/messages/", 302)]
    assert flashes(response) == ["0 requeued, 1 skipped: not found."]


@pytest.mark.parametrize(
    "url", ["/admin/herald/messages/{id}/requeue/", "/admin/herald/messages/requeue/"]
)
def test_post_without_csrf_token_is_refused(operator, put_message, aws, url):
    failed = put_message(Status.FAILED)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)

    response = browser.post(url.format(id=failed.id), {"ids": [failed.id], "reason": "x"})

    assert response.status_code == 403
    assert default_store().get(failed.id).status == Status.FAILED


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_not_allowed(console, put_message, method):
    failed = put_message(Status.FAILED)
    assert (
        getattr(console, method)(f"/admin/herald/messages/{failed.id}/requeue/").status_code == 405
    )
    assert getattr(console, method)("/admin/herald/messages/requeue/").status_code == 405
    assert default_store().get(failed.id).status == Status.FAILED


def test_store_outage_is_a_503_page_not_a_500(console, put_message, faults):
    failed = put_message(Status.FAILED)
    faults.fail("dynamodb", "GetItem", status=500, code="InternalServerError")
    faults.fail("dynamodb", "BatchGetItem", status=500, code="InternalServerError")
    faults.fail("dynamodb", "Query", status=500, code="InternalServerError")

    for url in ["/admin/herald/dashboard/", f"/admin/herald/messages/{failed.id}/requeue/"]:
        response = console.get(url)
        assert response.status_code == 503, url
        assert "did not answer" in response.content.decode()

    response = console.post(f"/admin/herald/messages/{failed.id}/requeue/", {}, follow=True)
    assert flashes(response) == ["0 requeued, 1 skipped: AWS unavailable, try again."]
