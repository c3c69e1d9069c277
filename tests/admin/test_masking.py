"""The console masks secret-looking query parameters of the target URL and the wider list of
secret-looking header names."""

import dataclasses

from notifications.domain import DeliveryRequest, Status
from notifications.store import default_store
from tests.factories import build_message


def test_the_message_page_masks_secret_url_parameters_and_headers(console):
    message = build_message(status=Status.QUEUED)
    message = dataclasses.replace(
        message,
        request=DeliveryRequest(
            url="https://crm.example.com/contacts?list=7&api_key=vendor-key-1&sig=vendor-sig-2",
            method="POST",
            headers={"X-Session": "vendor-session-3", "X-Credential": "vendor-credential-4"},
            body=None,
            body_is_json=False,
        ),
    )
    default_store().put_new(message)

    html = console.get(f"/admin/herald/messages/{message.id}/").content.decode()

    for secret in ["vendor-key-1", "vendor-sig-2", "vendor-session-3", "vendor-credential-4"]:
        assert secret not in html
    assert "list=7&amp;api_key=********&amp;sig=********" in html
