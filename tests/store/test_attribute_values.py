"""Herald's DynamoDB value conversion gives exactly what boto3's TypeSerializer and
TypeDeserializer give (it only takes the common types by a shorter way)."""

from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from notifications.domain import FailureReason, Status
from notifications.store.items import deserialize, serialize

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, max_value=10**20, min_value=-(10**20)
    ),
    st.binary(max_size=8).map(Binary),
    st.sampled_from(list(Status) + list(FailureReason)),  # the StrEnums Herald stores
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.frozensets(st.text(max_size=4), min_size=1, max_size=3),
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6))
def test_serialize_and_deserialize_agree_with_boto3(item):
    expected = {name: TypeSerializer().serialize(value) for name, value in item.items()}
    assert serialize(item) == expected
    assert deserialize(expected) == {
        name: TypeDeserializer().deserialize(value) for name, value in expected.items()
    }


@pytest.mark.parametrize("refused", [1.5, 10**38, -(10**38), object()])
def test_what_boto3_refuses_is_refused(refused):
    with pytest.raises((TypeError, ArithmeticError)):
        TypeSerializer().serialize(refused)
    with pytest.raises((TypeError, ArithmeticError)):
        serialize({"value": refused})


def test_numbers_come_back_as_decimals():
    assert deserialize(serialize({"n": 7, "d": Decimal("1.25")})) == {
        "n": Decimal(7),
        "d": Decimal("1.25"),
    }
