"""Producers in the admin: the API key and a new signing secret are shown once, in full; signing
secrets are masked everywhere else; keys rotate; producers deactivate; old secrets retire."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from notifications.models import Producer, SigningSecret, hash_api_key

CHANGELIST = "/admin/notifications/producer/"
NO_INLINE_FORMS = {
    "signing_secrets-TOTAL_FORMS": "0",
    "signing_secrets-INITIAL_FORMS": "0",
    "signing_secrets-MIN_NUM_FORMS": "0",
    "signing_secrets-MAX_NUM_FORMS": "1000",
}


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("root", password="a-long-test-password"))
    return client


def flashes(response):
    return [str(message) for message in response.context["messages"]]


def action(admin_client, name, *producers):
    return admin_client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [p.pk for p in producers]},
        follow=True,
    )


def test_create_shows_the_api_key_once(admin_client):
    response = admin_client.post(
        "/admin/notifications/producer/add/",
        {"name": "crm-sync", "is_active": "on", **NO_INLINE_FORMS},
        follow=True,
    )
    notes = flashes(response)
    (note,) = [n for n in notes if "shown once" in n]  # and Django's "was added successfully"
    key = re.search(r"shown once, store it now\): (\S+)$", note).group(1)
    producer = Producer.objects.get(name="crm-sync")
    assert producer.key_hash == hash_api_key(key)
    page = admin_client.get(f"/admin/notifications/producer/{producer.pk}/change/")
    assert key not in page.content.decode()


def test_new_keys_and_secrets_never_travel_in_a_cookie(admin_client):
    """Django's default message storage keeps flashes in a readable cookie; the key and the
    secret shown once must stay on the server (session storage)."""
    created = admin_client.post(
        "/admin/notifications/producer/add/",
        {"name": "crm-sync", "is_active": "on", **NO_INLINE_FORMS},
    )
    producer = Producer.objects.get(name="crm-sync")
    secret_added = admin_client.post(
        CHANGELIST, {"action": "add_signing_secret", "_selected_action": [producer.pk]}
    )
    cookies = [m.value for r in (created, secret_added) for m in r.cookies.values()]
    cookies += [m.value for m in admin_client.cookies.values()]
    assert "messages" not in admin_client.cookies
    assert not any(producer.key_id in c or "whsec_" in c for c in cookies)
    shown = admin_client.get(CHANGELIST).content.decode()  # the flashes, from the session
    assert "API key for crm-sync (shown once" in shown and "whsec_" in shown


def test_rotation_can_keep_the_old_key_for_a_grace_period(admin_client):
    producer = Producer(name="billing")
    old_key = producer.set_new_api_key()
    producer.save()
    (note,) = flashes(action(admin_client, "rotate_api_key_keep_old_day", producer))
    new_key = note.rsplit(" ", 1)[1]
    producer.refresh_from_db()
    assert producer.check_api_key(new_key) and producer.check_api_key(old_key)
    assert "the old key works until" in note
    later = producer.previous_key_valid_until + timedelta(seconds=1)
    assert not producer.check_api_key(old_key, now=later)


def test_rotate_key_and_deactivate(admin_client):
    producer = Producer(name="billing")
    old_key = producer.set_new_api_key()
    producer.save()

    (note,) = flashes(action(admin_client, "rotate_api_key", producer))
    new_key = note.rsplit(" ", 1)[1]
    producer.refresh_from_db()
    assert new_key != old_key and producer.check_api_key(new_key)
    assert not producer.check_api_key(old_key)

    assert flashes(action(admin_client, "deactivate", producer)) == ["1 producer(s) deactivated."]
    producer.refresh_from_db()
    assert producer.is_active is False


def test_signing_secret_shown_once_then_masked_and_old_ones_retired(admin_client):
    producer = Producer(name="billing")
    producer.set_new_api_key()
    producer.save()

    first = flashes(action(admin_client, "add_signing_secret", producer))[0].rsplit(" ", 1)[1]
    second = flashes(action(admin_client, "add_signing_secret", producer))[0].rsplit(" ", 1)[1]
    assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
    assert list(producer.signing_secrets.values_list("secret", flat=True)) == [first, second]

    change_page = admin_client.get(f"/admin/notifications/producer/{producer.pk}/change/")
    html = change_page.content.decode()
    assert first not in html and second not in html
    assert first[:10] + "…" in html and second[:10] + "…" in html
    listing = admin_client.get(CHANGELIST).content.decode()
    assert re.search(r'class="field-signing_secret_count">2<', listing)

    assert flashes(action(admin_client, "retire_old_signing_secrets", producer)) == [
        "billing: 1 older signing secret(s) retired."
    ]
    assert list(SigningSecret.objects.values_list("secret", flat=True)) == [second]
    assert flashes(action(admin_client, "retire_old_signing_secrets", producer)) == [
        "billing: 0 older signing secret(s) retired."
    ]


def test_signing_secrets_cannot_be_typed_in_and_can_be_deleted_one_by_one(admin_client):
    producer = Producer(name="billing")
    producer.set_new_api_key()
    producer.save()
    SigningSecret.objects.create(producer=producer, secret="whsec_c2VjcmV0LXZhbHVlLW9uZQ==")
    html = admin_client.get(f"/admin/notifications/producer/{producer.pk}/change/").content.decode()
    assert 'name="signing_secrets-0-DELETE"' in html
    assert 'name="signing_secrets-0-secret"' not in html
    assert 'name="signing_secrets-1-' not in html  # no empty row to type a secret into
    assert "c2VjcmV0LXZhbHVlLW9uZQ" not in html


def test_deactivate_and_reactivate_are_logged(admin_client):
    from django.contrib.admin.models import LogEntry

    producer = Producer(name="paused")
    producer.set_new_api_key()
    producer.save()
    assert flashes(action(admin_client, "deactivate", producer)) == ["1 producer(s) deactivated."]
    assert flashes(action(admin_client, "reactivate", producer)) == ["1 producer(s) reactivated."]
    producer.refresh_from_db()
    assert producer.is_active is True
    logged = [entry.change_message for entry in LogEntry.objects.order_by("action_time")]
    assert logged[-2:] == ["Deactivated.", "Reactivated."]
