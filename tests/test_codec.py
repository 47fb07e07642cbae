"""Behaviour tests for the message codec (transport/codec.py).

The tag registry is process-global, so every class here uses the
"codectest." prefix; other test modules use other prefixes.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs
import msgpack
import pytest

from transport.codec import (
    DEFAULT_MAX_FRAME,
    DecodeError,
    EncodeError,
    decode,
    decode_value,
    encode,
    encode_value,
    is_message,
    message,
    registered,
    set_max_frame,
    tag_of,
)

# --------------------------------------------------------------------------
# Message classes used by the tests
# --------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = 3


@message("codectest.Inner")
class Inner:
    n: int
    label: str = ""


@message("codectest.OtherInner")
class OtherInner:
    data: bytes


@message("codectest.Everything")
class Everything:
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    nothing: None
    maybe: int | None
    ints: list[int]
    var_tuple: tuple[str, ...]
    fixed: tuple[int, str]
    by_name: dict[str, int]
    by_id: dict[int, str]
    color: Color
    inner: Inner
    inners: list[Inner]
    either: Inner | OtherInner
    any_data: Any
    any_msg: Any
    mode: Literal["fast", "slow", 3]
    with_default: int = 7
    with_factory: list[str] = attrs.field(factory=list)


@message("codectest.Blob")
class Blob:
    data: bytes


@message("codectest.Defaults")
class Defaults:
    name: str
    count: int = 3
    note: str | None = None
    items: list[str] = attrs.field(factory=list)
    table: dict[str, int] = attrs.field(factory=dict)


@message("codectest.VersionedV1")
class VersionedV1:
    """Stands for version 1 of a message whose version 2 added a field."""

    a: int
    b: str = "b"


@message("codectest.VersionedV2")
class VersionedV2:
    """Stands for version 2: ``added`` and ``added_list`` are new, with defaults."""

    a: int
    b: str = "b"
    added: int = 42
    added_list: list[int] = attrs.field(factory=list)


@message("codectest.Private")
class Private:
    _secret: int
    public: str = ""


def sample_everything(**overrides: Any) -> Everything:
    fields: dict[str, Any] = dict(
        i=-12345678901,
        f=2.5,
        s="héllo ✓ wörld",
        b=b"\x00\xffbin",
        flag=True,
        nothing=None,
        maybe=None,
        ints=[1, -2, 3],
        var_tuple=("a", "b"),
        fixed=(7, "seven"),
        by_name={"x": 1, "y": -2},
        by_id={1: "one", -5: "minus five"},
        color=Color.GREEN,
        inner=Inner(1, "one"),
        inners=[Inner(2), Inner(3, "three")],
        either=OtherInner(b"other"),
        any_data={"k": [1, 2.5, "s", b"b", None, True, {"deep": [1]}], 7: "int key"},
        any_msg=Inner(9, "in any"),
        mode="slow",
    )
    fields.update(overrides)
    return Everything(**fields)


def wire(tag: str, **fields: Any) -> bytes:
    """Hand-built msgpack frame: {"@": tag, **fields}."""
    return msgpack.packb({"@": tag, **fields}, use_bin_type=True)


def everything_map(**overrides: Any) -> dict:
    """The msgpack-native map of a sample Everything, with fields overridden."""
    d = encode_value(sample_everything())
    d.update(overrides)
    return d


def decode_map(d: dict) -> Any:
    return decode(msgpack.packb(d, use_bin_type=True))


@pytest.fixture
def restore_max_frame():
    previous = set_max_frame(DEFAULT_MAX_FRAME)
    try:
        yield
    finally:
        set_max_frame(previous)


def frame_of_size(size: int) -> bytes:
    """A valid encoded Blob frame of exactly ``size`` bytes (size > 70 KiB)."""
    probe = wire("codectest.Blob", data=b"x" * 70_000)
    overhead = len(probe) - 70_000
    data = wire("codectest.Blob", data=b"x" * (size - overhead))
    assert len(data) == size
    return data


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_round_trip_every_field_kind():
    m = sample_everything()
    assert decode(encode(m)) == m


def test_round_trip_keeps_python_types_of_fields():
    out = decode(encode(sample_everything()))
    assert type(out) is Everything
    assert type(out.f) is float
    assert type(out.var_tuple) is tuple and out.var_tuple == ("a", "b")
    assert type(out.fixed) is tuple and out.fixed == (7, "seven")
    assert type(out.ints) is list
    assert out.color is Color.GREEN
    assert type(out.inner) is Inner
    assert all(type(x) is Inner for x in out.inners)
    assert type(out.either) is OtherInner
    assert type(out.any_msg) is Inner and out.any_msg == Inner(9, "in any")
    assert out.by_id == {1: "one", -5: "minus five"}
    assert all(type(k) is int for k in out.by_id)
    assert out.with_default == 7 and out.with_factory == []


def test_int_on_the_wire_is_widened_for_float_field():
    out = decode_map(everything_map(f=2))
    assert out.f == 2.0 and type(out.f) is float


def test_optional_field_round_trips_both_nil_and_value():
    assert decode(encode(sample_everything(maybe=None))).maybe is None
    assert decode(encode(sample_everything(maybe=-3))).maybe == -3


def test_union_of_two_message_types_decodes_each_option():
    for value in (Inner(5, "five"), OtherInner(b"bytes")):
        out = decode(encode(sample_everything(either=value)))
        assert out.either == value and type(out.either) is type(value)


def test_union_of_two_message_types_rejects_a_third_message():
    with pytest.raises(DecodeError, match="either"):
        decode_map(everything_map(either=encode_value(Blob(b"no"))))


def test_any_field_holds_plain_data_and_messages():
    data = {"list": [1, [2, [3]]], "msgs": [Inner(1), OtherInner(b"o")], 3: None}
    out = decode(encode(sample_everything(any_data=data, any_msg=[Inner(4)])))
    assert out.any_data == data
    assert type(out.any_data["msgs"][1]) is OtherInner
    assert out.any_msg == [Inner(4)]


def test_enum_field_is_sent_by_value():
    raw = msgpack.unpackb(encode(sample_everything(color=Color.RED)), raw=False, strict_map_key=False)
    assert raw["color"] == "red"
    raw = msgpack.unpackb(encode(sample_everything(color=Color.BLUE)), raw=False, strict_map_key=False)
    assert raw["color"] == 3
    assert decode_map(everything_map(color=3)).color is Color.BLUE


def test_enum_field_rejects_unknown_value():
    with pytest.raises(DecodeError, match="color"):
        decode_map(everything_map(color="purple"))


def test_literal_field_accepts_listed_values_only():
    for value in ("fast", "slow", 3):
        assert decode(encode(sample_everything(mode=value))).mode == value
    for bad in ("medium", 4, None, b"fast"):
        with pytest.raises(DecodeError, match="mode"):
            decode_map(everything_map(mode=bad))


def test_round_trip_of_field_with_leading_underscore():
    # attrs strips the underscore from the __init__ argument (alias "secret").
    m = Private(5, "p")
    assert decode(encode(m)) == m


# --------------------------------------------------------------------------
# Unknown, missing and wrong fields
# --------------------------------------------------------------------------


def test_unknown_fields_on_the_wire_are_ignored():
    out = decode_map(everything_map(brand_new=[1, 2], another={"x": b"y"}))
    assert out == sample_everything()


def test_missing_fields_with_defaults_are_filled():
    out = decode(wire("codectest.Defaults", name="n"))
    assert out == Defaults("n", 3, None, [], {})


def test_missing_factory_defaults_are_fresh_objects():
    first = decode(wire("codectest.Defaults", name="a"))
    second = decode(wire("codectest.Defaults", name="b"))
    assert first.items == [] and second.items == []
    assert first.items is not second.items
    assert first.table is not second.table


def test_missing_required_field_raises_naming_the_field():
    with pytest.raises(DecodeError) as e:
        decode(wire("codectest.Defaults", count=1))
    assert "missing required field" in str(e.value)
    assert "name" in str(e.value)


def test_missing_required_field_in_nested_message_names_it():
    with pytest.raises(DecodeError) as e:
        decode_map(everything_map(inner={"@": "codectest.Inner", "label": "no n"}))
    msg = str(e.value)
    assert "missing required field" in msg and "inner" in msg and msg.endswith(".n")


@pytest.mark.parametrize(
    "field, bad, expected",
    [
        ("i", "12", "int"),
        ("i", 1.0, "int"),
        ("f", "2.5", "float"),
        ("s", b"bytes", "str"),
        ("b", "text", "bytes"),
        ("flag", 1, "bool"),
        ("nothing", 0, "nil"),
        ("ints", {"a": 1}, "array"),
        ("by_name", [1, 2], "map"),
        ("inner", "not a map", "codectest.Inner"),
        ("fixed", [1], "array of 2"),
        ("fixed", [1, "a", 2], "array of 2"),
    ],
)
def test_wrong_field_type_raises_naming_field_and_expected_type(field, bad, expected):
    with pytest.raises(DecodeError) as e:
        decode_map(everything_map(**{field: bad}))
    msg = str(e.value)
    assert "wrong field type" in msg
    assert f"codectest.Everything.{field}" in msg
    assert expected in msg


def test_wrong_item_type_inside_containers_names_the_item():
    with pytest.raises(DecodeError, match=r"ints\[1\] expects int"):
        decode_map(everything_map(ints=[1, "two"]))
    with pytest.raises(DecodeError, match=r"by_id\.key expects int"):
        decode_map(everything_map(by_id={"one": "x"}))
    with pytest.raises(DecodeError, match=r"fixed\[1\] expects str"):
        decode_map(everything_map(fixed=[1, 2]))


def test_bool_is_not_accepted_for_int_field():
    with pytest.raises(DecodeError, match=r"\.i expects int, got bool"):
        decode_map(everything_map(i=True))


def test_int_is_not_accepted_for_str_field():
    with pytest.raises(DecodeError, match=r"\.s expects str, got int"):
        decode_map(everything_map(s=5))


def test_bool_is_not_accepted_for_float_field():
    with pytest.raises(DecodeError, match=r"\.f expects float"):
        decode_map(everything_map(f=False))


# --------------------------------------------------------------------------
# Bad frames
# --------------------------------------------------------------------------


def test_unknown_tag_raises():
    with pytest.raises(DecodeError, match="unknown message tag"):
        decode(wire("codectest.NoSuchMessage", x=1))


def test_bytes_that_are_not_msgpack_raise():
    for junk in (b"", b"\xc1", b"\x92\x01", wire("codectest.Inner", n=1) + b"\x00"):
        with pytest.raises(DecodeError, match="not msgpack"):
            decode(junk)


@pytest.mark.parametrize("value", [[1, 2], [], 5, "codectest.Inner", None, b"x", 1.5, True])
def test_msgpack_value_that_is_not_a_map_raises(value):
    with pytest.raises(DecodeError, match="map"):
        decode(msgpack.packb(value, use_bin_type=True))


def test_map_without_tag_raises():
    with pytest.raises(DecodeError, match="no message tag"):
        decode(msgpack.packb({"n": 1}))


def test_non_bytes_input_raises_decode_error():
    for value in ("text", None, 5, [1]):
        with pytest.raises(DecodeError):
            decode(value)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted():
    data = encode(Inner(1, "x"))
    assert decode(bytearray(data)) == Inner(1, "x")
    assert decode(memoryview(data)) == Inner(1, "x")


def test_decode_value_takes_msgpack_native_data():
    assert decode_value({"@": "codectest.Inner", "n": 2}) == Inner(2)
    with pytest.raises(DecodeError):
        decode_value([1])


# --------------------------------------------------------------------------
# Frame size limit
# --------------------------------------------------------------------------


def test_frame_at_default_limit_is_accepted(restore_max_frame):
    assert DEFAULT_MAX_FRAME == 1048576
    out = decode(frame_of_size(1048576))
    assert type(out) is Blob


def test_frame_over_default_limit_raises_mentioning_limit(restore_max_frame):
    with pytest.raises(DecodeError) as e:
        decode(frame_of_size(1048576 + 1))
    assert "1048576" in str(e.value) and "limit" in str(e.value)


def test_set_max_frame_changes_the_limit(restore_max_frame):
    data = encode(Blob(b"x" * 100))
    previous = set_max_frame(50)
    assert previous == DEFAULT_MAX_FRAME
    with pytest.raises(DecodeError, match="limit of 50"):
        decode(data)
    set_max_frame(2 * 1048576)
    assert type(decode(frame_of_size(1048576 + 1))) is Blob


def test_set_max_frame_refuses_non_positive(restore_max_frame):
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ValueError):
            set_max_frame(bad)  # type: ignore[arg-type]


def test_decode_max_size_applies_per_call(restore_max_frame):
    data = encode(Blob(b"x" * 100))
    with pytest.raises(DecodeError, match=f"limit of {len(data) - 1}"):
        decode(data, max_size=len(data) - 1)
    assert decode(data, max_size=len(data)) == Blob(b"x" * 100)
    big = frame_of_size(1048576 + 1)
    assert type(decode(big, max_size=2 * 1048576)) is Blob
    # the per-call limit does not change the process-wide one
    with pytest.raises(DecodeError):
        decode(big)


# --------------------------------------------------------------------------
# Encoding errors
# --------------------------------------------------------------------------


def test_encode_of_unregistered_object_raises():
    @attrs.frozen
    class NotRegistered:
        x: int

    for obj in (NotRegistered(1), {"@": "codectest.Inner", "n": 1}, 5, object()):
        with pytest.raises(EncodeError):
            encode(obj)


def test_encode_of_field_holding_unencodable_object_raises():
    for bad in (object(), {1, 2}.__iter__(), lambda: 1, bytearray(b"x"), complex(1, 2)):
        with pytest.raises(EncodeError):
            encode(sample_everything(any_data=bad))
    with pytest.raises(EncodeError):
        encode(sample_everything(any_data={"nested": [object()]}))


def test_encode_of_int_out_of_msgpack_range_raises():
    with pytest.raises(EncodeError):
        encode(sample_everything(i=2**64))


def test_encode_of_field_not_matching_declared_type_raises():
    # The codec's contract: "EncodeError - our bug: ... a value that does not
    # match its declared type". Otherwise the peer gets the blame (DecodeError).
    with pytest.raises(EncodeError):
        encode(Inner("not an int"))  # type: ignore[arg-type]


def test_encode_over_the_limit_raises(restore_max_frame):
    with pytest.raises(EncodeError, match="limit"):
        encode(Blob(b"x" * 1048576))
    set_max_frame(64)
    with pytest.raises(EncodeError, match="64"):
        encode(Blob(b"x" * 100))
    assert decode(encode(Blob(b"x"))) == Blob(b"x")


# --------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------


def test_registering_a_tag_for_a_different_class_raises():
    class Intruder:
        n: int

    with pytest.raises(ValueError, match="codectest.Inner"):
        message("codectest.Inner")(Intruder)
    assert registered()["codectest.Inner"] is Inner


def test_registering_a_tag_for_a_same_named_class_of_another_module_raises():
    message("codectest.Twin")(type("Twin", (), {"__annotations__": {"x": int}, "__module__": "proto_one"}))
    other = type("Twin", (), {"__annotations__": {"x": int}, "__module__": "proto_two"})
    with pytest.raises(ValueError):
        message("codectest.Twin")(other)


def test_registering_the_same_class_again_is_harmless():
    assert message("codectest.Inner")(Inner) is Inner
    assert decode(encode(Inner(1))) == Inner(1)


@pytest.mark.parametrize("tag", ["", "NoDot", 5, None, b"codectest.X"])
def test_tag_must_look_like_proto_name(tag):
    with pytest.raises(ValueError, match="proto.Name"):
        message(tag)  # type: ignore[arg-type]


def test_non_frozen_attrs_class_is_refused():
    @attrs.define
    class Mutable:
        x: int

    with pytest.raises(TypeError, match="frozen"):
        message("codectest.Mutable")(Mutable)
    assert "codectest.Mutable" not in registered()


def test_non_frozen_attrs_class_with_validator_is_refused():
    @attrs.define
    class MutableValidated:
        x: int = attrs.field(validator=attrs.validators.instance_of(int))

    with pytest.raises(TypeError, match="frozen"):
        message("codectest.MutableValidated")(MutableValidated)


def test_plain_annotated_class_becomes_frozen_attrs_class():
    @message("codectest.Plain")
    class Plain:
        x: int
        y: str = "y"

    assert attrs.has(Plain)
    p = Plain(1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    assert is_message(p) and tag_of(p) == "codectest.Plain" and tag_of(Plain) == "codectest.Plain"
    assert decode(encode(p)) == p


def test_tag_of_unregistered_raises_encode_error():
    with pytest.raises(EncodeError):
        tag_of(object())
    assert not is_message(object())


# --------------------------------------------------------------------------
# Wire form and neighbouring versions
# --------------------------------------------------------------------------


def test_wire_form_is_msgpack_map_with_tag_under_at():
    raw = msgpack.unpackb(encode(Inner(5, "five")), raw=False)
    assert raw == {"@": "codectest.Inner", "n": 5, "label": "five"}
    raw = msgpack.unpackb(encode(OtherInner(b"b")), raw=True)
    assert raw == {b"@": b"codectest.OtherInner", b"data": b"b"}  # bytes travel as bin, str as str
    nested = msgpack.unpackb(encode(sample_everything()), raw=False, strict_map_key=False)
    assert nested["@"] == "codectest.Everything"
    assert nested["inner"] == {"@": "codectest.Inner", "n": 1, "label": "one"}


def test_v2_sender_with_extra_field_decodes_on_v1_class():
    v2_map = {"@": "codectest.VersionedV1", "a": 1, "b": "bee", "added": 43, "added_list": [1]}
    assert decode_map(v2_map) == VersionedV1(1, "bee")


def test_v1_sender_lacking_new_field_decodes_on_v2_class():
    v1_map = {"@": "codectest.VersionedV2", "a": 1, "b": "bee"}
    out = decode_map(v1_map)
    assert out == VersionedV2(1, "bee", 42, [])
