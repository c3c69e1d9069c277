"""The store counts an item's size as DynamoDB does (names and values, UTF-8, overheads)."""

from notifications.store.items import item_size

EMOJI = "\U0001f600"


def test_item_size_counts_names_and_utf8_values_as_dynamodb_does():
    item = {
        "pk": {"S": "é"},  # 2 + 2
        "n": {"N": "12345"},  # 1 + 4 (a byte per two digits, rounded up, plus one)
        "ok": {"BOOL": True},  # 2 + 1
        "l": {"L": [{"S": "ab"}, {"NULL": True}]},  # 1 + 3 + (1 + 2) + (1 + 1)
        "m": {"M": {"k": {"S": EMOJI}}},  # 1 + 3 + (1 + 1 + 4)
    }
    assert item_size(item) == 4 + 5 + 3 + 9 + 10
