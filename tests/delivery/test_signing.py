"""Standard Webhooks signatures: the spec's known answer, and real deliveries checked with the
independent `standardwebhooks` verifier."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notifications.domain import Status
from notifications.models import SigningSecret
from notifications.services import Submission, message_submit, signing_secret_rotate
from notifications.signing import sign, signature_headers
from tests.factories import make_producer
from tests.support.worker import run_until, status_of
from tests.vendor import Answer


def test_known_answer_vector_from_the_specification():
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        '{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_no_secret_no_headers():
    assert signature_headers([], "msg_1", 1, "{}") == {}


def deliver(producer, url, body='{"event":"paid"}'):
    submission = Submission(target_url=url, method="POST", headers={}, body=body, body_is_json=True)
    return message_submit(producer_id=producer.public_id, submission=submission).message.id


def verify(secret: str, call) -> dict:
    headers = {name.lower(): value for name, value in call.headers.items()}
    return Webhook(secret).verify(call.body, headers)


def test_deliveries_are_signed_and_verify_with_the_independent_library(make_worker, vendor):
    producer, _ = make_producer("signed")
    secret = signing_secret_rotate(producer=producer)
    assert secret.startswith("whsec_") and len(secret) >= 6 + 32
    url = vendor.script("/signed", Answer(500), Answer(200))
    message_id = deliver(producer, url)

    run_until(make_worker(), lambda: status_of(message_id) == Status.COMPLETED)

    first, second = vendor.requests_to("/signed")
    for call in (first, second):
        assert verify(secret, call) == {"event": "paid"}
        assert call.headers["webhook-id"] == message_id  # stable across attempts
    with pytest.raises(WebhookVerificationError):
        tampered = type(first)(first.method, first.path, first.headers, b'{"event":"refund"}', 0)
        verify(secret, tampered)
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 32, first)


def test_rotation_signs_with_old_and_new_until_the_old_is_retired(make_worker, vendor):
    producer, _ = make_producer("rotating")
    old = signing_secret_rotate(producer=producer)
    out = StringIO()
    call_command("rotate_signing_secret", "rotating", stdout=out)
    new = out.getvalue().strip().splitlines()[-1]
    assert new.startswith("whsec_") and new != old
    assert SigningSecret.objects.filter(producer=producer).count() == 2

    message_id = deliver(producer, vendor.url("/rotating"))
    worker = make_worker()
    run_until(worker, lambda: status_of(message_id) == Status.COMPLETED)
    [call] = vendor.requests_to("/rotating")
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    verify(old, call)
    verify(new, call)

    call_command("rotate_signing_secret", "rotating", "--retire-old", stdout=StringIO())
    assert SigningSecret.objects.filter(producer=producer).count() == 1
    assert not SigningSecret.objects.filter(secret__in=[old, new]).exists()


def test_rotate_command_for_unknown_producer_fails(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("rotate_signing_secret", "nobody", stdout=StringIO())


def test_unsigned_producer_sends_no_webhook_headers(make_worker, vendor):
    producer, _ = make_producer("plain")
    message_id = deliver(producer, vendor.url("/plain"))
    run_until(make_worker(), lambda: status_of(message_id) == Status.COMPLETED)
    [call] = vendor.requests_to("/plain")
    assert not any(name.lower().startswith("webhook-") for name in call.headers)
