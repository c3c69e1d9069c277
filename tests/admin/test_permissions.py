"""Every console page and action, for every kind of user: staff only; `view_message` to look,
`requeue_message` to requeue (a forged POST without it is refused and changes nothing)."""

import pytest
from django.contrib.admin.models import LogEntry

from notifications.domain import Status
from notifications.store import default_store
from tests.admin.conftest import make_user

VIEW_PAGES = ["/admin/herald/dashboard/", "/admin/herald/messages/", "/admin/herald/messages/{id}/"]
REQUEUE_PAGES = ["/admin/herald/messages/{id}/requeue/", "/admin/herald/messages/requeue/?ids={id}"]
REQUEUE_POSTS = [
    ("/admin/herald/messages/{id}/requeue/", {"reason": "forged"}),
    ("/admin/herald/messages/requeue/", {"ids": ["{id}"], "reason": "forged"}),
]


@pytest.fixture
def failed(aws, put_message):
    return put_message(Status.FAILED)


def urls(pages, message_id):
    return [page.format(id=message_id) for page in pages]


def test_anonymous_and_non_staff_are_sent_to_the_login_page(client, failed, db):
    member = make_user("nina", staff=False, permissions=("view_message", "requeue_message"))
    for user in (None, member):
        if user:
            client.force_login(user)
        for url in urls(VIEW_PAGES + REQUEUE_PAGES, failed.id):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/?next=")
        response = client.post(f"/admin/herald/messages/{failed.id}/requeue/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert default_store().get(failed.id).status == Status.FAILED


def test_staff_without_permissions_gets_403_everywhere(client, failed, db):
    client.force_login(make_user("stan"))
    for url in urls(VIEW_PAGES + REQUEUE_PAGES, failed.id):
        assert client.get(url).status_code == 403, url


def test_viewer_sees_everything_but_cannot_requeue(client, viewer, failed):
    client.force_login(viewer)
    for url in urls(VIEW_PAGES, failed.id):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Requeue" not in response.content.decode(), url  # no button, no checkbox
    for url in urls(REQUEUE_PAGES, failed.id):
        assert client.get(url).status_code == 403, url
    for url, data in REQUEUE_POSTS:
        data = {
            key: [v.format(id=failed.id) for v in value] if isinstance(value, list) else value
            for key, value in data.items()
        }
        assert client.post(url.format(id=failed.id), data).status_code == 403

    message = default_store().get(failed.id)
    assert message.status == Status.FAILED
    assert not [entry for entry in message.history if entry.actor.startswith("operator:")]
    assert not LogEntry.objects.exists()


def test_operator_sees_requeue_controls(console, failed):
    detail = console.get(f"/admin/herald/messages/{failed.id}/").content.decode()
    assert f'href="/admin/herald/messages/{failed.id}/requeue/" id="requeue-button"' in detail
    listing = console.get("/admin/herald/messages/").content.decode()
    assert f'name="ids" value="{failed.id}"' in listing
    for url in urls(REQUEUE_PAGES, failed.id):
        assert console.get(url).status_code == 200, url


def test_superuser_has_every_permission(client, failed, db):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("root", password="a-long-test-password"))
    for url in urls(VIEW_PAGES + REQUEUE_PAGES, failed.id):
        assert client.get(url).status_code == 200, url
