"""Secret-looking query parameters of a target URL, and headers named with the wider word list,
are masked in API responses (the stored request, and what is sent, stay exact)."""

import json

import pytest

from notifications import validation
from notifications.store import default_store
from tests.factories import message_payload

URL = "/api/v1/messages"
TARGET = (
    "https://vendor.example.com/hook?campaign=autumn&api_key=k-1&access_token=t-2&sig=s-3"
    "&client_secret=c-4&signup=yes&X-Amz-Credential=a-5&X-Amz-Signature=a-6&passwd=p-7"
)
MASKED = (
    "https://vendor.example.com/hook?campaign=autumn&api_key=********&access_token=********"
    "&sig=********&client_secret=********&signup=yes&X-Amz-Credential=********"
    "&X-Amz-Signature=********&passwd=********"
)
SECRET_HEADERS = {
    "X-Credential": "h-1",
    "X-Session-Id": "h-2",
    "X-JWT": "h-3",
    "X-Passwd": "h-4",
    "X-Vendor-Sig": "h-5",
}


def test_secret_query_parameters_and_headers_are_masked_in_responses(client):
    payload = message_payload(target_url=TARGET, headers={**SECRET_HEADERS, "X-Campaign": "a"})
    response = client.post(URL, data=json.dumps(payload), content_type="application/json")
    message_id = response.json()["id"]

    for data in (
        response.json(),
        client.get(f"{URL}/{message_id}").json(),
        client.get(URL).json()["results"][0],
    ):
        assert data["target"]["url"] == MASKED
        assert data["target"]["headers"] == {
            **dict.fromkeys(SECRET_HEADERS, "********"),
            "X-Campaign": "a",
        }
    stored, _ = default_store().get_full(message_id)
    assert stored.request.url == TARGET
    assert stored.request.headers["X-JWT"] == "h-3"


@pytest.mark.parametrize(
    "url,shown",
    [
        ("https://v.example/p", "https://v.example/p"),
        ("https://v.example/p?token=", "https://v.example/p?token="),
        ("https://v.example/p?a=1&Token=x#frag", "https://v.example/p?a=1&Token=********#frag"),
        ("https://v.example/p?session%5Fid=x", "https://v.example/p?session%5Fid=********"),
        ("https://v.example/p#access_token=x&s=1", "https://v.example/p#access_token=********&s=1"),
    ],
)
def test_mask_url(url, shown):
    assert validation.mask_url(url) == shown
