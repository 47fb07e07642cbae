"""Message codec: frozen attrs classes <-> msgpack bytes.

How this works
--------------
``@message("proto.Name")`` turns a class into a frozen, slotted attrs class (or
accepts one already made) and registers it under a stable tag. At registration
the codec reads the field annotations once and compiles, per field, a small
checker for the wire value: ``int``, ``float`` (an int is widened), ``str``,
``bytes``, ``bool``, ``None``, ``X | None``, ``list[X]``, ``tuple[X, ...]``,
``dict[K, V]``, enums (sent by value), other registered messages (nested maps)
and ``Any`` (msgpack-native data, passed through).

Wire form: one msgpack map ``{"@": tag, field: value, ...}``. Decoding ignores
fields it does not know and fills defaults for missing optional ones, so nodes
of neighbouring versions keep talking.

Errors say whose fault they are (as in h11):

* :class:`DecodeError` - the *peer's* bytes are bad: not msgpack, not a map, no
  tag, unknown tag, a required field missing, a field of the wrong type, or a
  frame over the size limit (default 1 MiB). Transports catch it, count it,
  drop the frame and keep serving. Nothing else ever escapes :func:`decode`.
* :class:`EncodeError` - *our* bug: an unregistered object or a value that does
  not match its declared type. It is raised loudly.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any, Callable

import attrs
import msgpack

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DecodeError",
    "EncodeError",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
    "is_message",
    "message",
    "registered",
    "set_max_frame",
    "tag_of",
]

TAG_KEY = "@"
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB

_max_frame = DEFAULT_MAX_FRAME


class DecodeError(ValueError):
    """The bytes from a peer do not form a valid message (the peer's fault)."""


class EncodeError(TypeError):
    """We were asked to encode something that is not a valid message (our fault)."""


def set_max_frame(limit: int) -> int:
    """Set the process-wide frame size limit in bytes; returns the previous one."""
    global _max_frame
    if not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"frame size limit must be a positive int, got {limit!r}")
    previous, _max_frame = _max_frame, limit
    return previous


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

# tag -> class, and class -> spec. A spec is (tag, fields) where fields is a
# tuple of (name, required, default, check) and check(value, path) -> value.
_by_tag: dict[str, type] = {}
_specs: dict[type, tuple[str, tuple]] = {}

Check = Callable[[Any, str], Any]


def message(tag: str) -> Callable[[type], type]:
    """Register a message class under a stable wire tag.

    The class may be a plain annotated class (it is made ``attrs.frozen``) or an
    attrs class already; either way it must be frozen. Tags are unique per
    process: registering a second class under a used tag is a bug.
    """
    if not isinstance(tag, str) or not tag or "." not in tag:
        raise ValueError(f"message tag must look like 'proto.Name', got {tag!r}")

    def register(cls: type) -> type:
        if not attrs.has(cls):
            cls = attrs.frozen(cls)
        elif cls.__setattr__ is object.__setattr__:
            raise TypeError(f"{cls.__qualname__}: messages must be frozen attrs classes")
        previous = _by_tag.get(tag)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise ValueError(f"message tag {tag!r} is already used by {previous.__qualname__}")
        attrs.resolve_types(cls)
        fields = []
        for f in attrs.fields(cls):
            if not f.init:
                continue
            required = f.default is attrs.NOTHING
            default = f.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                factory = default.factory
                default = factory  # called on fill
                fields.append((f.name, required, (True, factory), _checker(f.type, cls, f.name)))
            else:
                fields.append((f.name, required, (False, default), _checker(f.type, cls, f.name)))
        _by_tag[tag] = cls
        _specs[cls] = (tag, tuple(fields))
        cls.__fleetplane_tag__ = tag  # type: ignore[attr-defined]
        return cls

    return register


def is_message(obj: Any) -> bool:
    return type(obj) in _specs


def tag_of(cls_or_obj: Any) -> str:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    try:
        return _specs[cls][0]
    except KeyError:
        raise EncodeError(f"{cls.__qualname__} is not a registered message") from None


def registered() -> dict[str, type]:
    """A copy of the tag -> class registry."""
    return dict(_by_tag)


# --------------------------------------------------------------------------
# Field checkers (wire value -> Python value, or DecodeError)
# --------------------------------------------------------------------------

_PRIMITIVE_NAMES = {int: "int", float: "float", str: "str", bytes: "bytes", bool: "bool", type(None): "nil"}


def _type_name(v: Any) -> str:
    if isinstance(v, dict) and TAG_KEY in v:
        return f"message {v.get(TAG_KEY)!r}"
    return _PRIMITIVE_NAMES.get(type(v), type(v).__name__)


def _wrong(path: str, want: str, v: Any) -> DecodeError:
    return DecodeError(f"wrong field type: {path} expects {want}, got {_type_name(v)}")


def _checker(tp: Any, owner: type, name: str) -> Check:
    """Build a checker for annotation ``tp`` (called once per field at registration)."""
    if tp is None or tp is type(None):
        def check_none(v: Any, path: str) -> Any:
            if v is not None:
                raise _wrong(path, "nil", v)
            return None
        return check_none
    if tp is Any or tp is object:
        return _check_any
    if tp is bool:
        def check_bool(v: Any, path: str) -> Any:
            if v.__class__ is not bool:
                raise _wrong(path, "bool", v)
            return v
        return check_bool
    if tp is int:
        def check_int(v: Any, path: str) -> Any:
            if v.__class__ is not int:
                raise _wrong(path, "int", v)
            return v
        return check_int
    if tp is float:
        def check_float(v: Any, path: str) -> Any:
            c = v.__class__
            if c is float:
                return v
            if c is int:
                return float(v)
            raise _wrong(path, "float", v)
        return check_float
    if tp is str:
        def check_str(v: Any, path: str) -> Any:
            if v.__class__ is not str:
                raise _wrong(path, "str", v)
            return v
        return check_str
    if tp is bytes:
        def check_bytes(v: Any, path: str) -> Any:
            if v.__class__ is not bytes:
                raise _wrong(path, "bytes", v)
            return v
        return check_bytes
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = {m.value: m for m in tp}

        def check_enum(v: Any, path: str) -> Any:
            try:
                return members[v]
            except (KeyError, TypeError):
                raise DecodeError(f"wrong field type: {path} expects one of {tp.__name__} {sorted(map(repr, members))}, got {v!r:.40}") from None
        return check_enum
    if isinstance(tp, type) and attrs.has(tp):
        want_cls = tp

        def check_nested(v: Any, path: str) -> Any:
            if v.__class__ is not dict:
                raise _wrong(path, f"message {tag_of(want_cls)!r}", v)
            msg = _decode_map(v, path)
            if not isinstance(msg, want_cls):
                raise DecodeError(f"wrong field type: {path} expects message {tag_of(want_cls)!r}, got {tag_of(msg)!r}")
            return msg
        return check_nested

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        nullable = len(options) != len(args)
        subs = [_checker(a, owner, name) for a in options]
        want = " | ".join(_describe(a) for a in args)

        def check_union(v: Any, path: str) -> Any:
            if v is None and nullable:
                return None
            if len(subs) == 1:
                return subs[0](v, path)
            for sub in subs:
                try:
                    return sub(v, path)
                except DecodeError:
                    continue
            raise _wrong(path, want, v)
        return check_union
    if origin is typing.Literal:
        allowed = set(args)

        def check_literal(v: Any, path: str) -> Any:
            if v.__class__ not in (str, int, bool, type(None)) or v not in allowed:
                raise DecodeError(f"wrong field type: {path} expects one of {sorted(map(repr, allowed))}, got {v!r:.40}")
            return v
        return check_literal
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item = _checker(args[0], owner, name)
            make = tuple
        elif origin is tuple and args and Ellipsis not in args:
            # fixed-shape tuple
            items = [_checker(a, owner, name) for a in args]

            def check_fixed(v: Any, path: str) -> Any:
                if v.__class__ is not list or len(v) != len(items):
                    raise _wrong(path, f"array of {len(items)}", v)
                return tuple(c(x, f"{path}[{i}]") for i, (c, x) in enumerate(zip(items, v)))
            return check_fixed
        else:
            item = _checker(args[0], owner, name) if args else _check_any
            make = {list: list, tuple: tuple, frozenset: frozenset, set: frozenset}.get(origin or tp, list)

        def check_seq(v: Any, path: str) -> Any:
            if v.__class__ is not list:
                raise _wrong(path, "array", v)
            return make([item(x, f"{path}[{i}]") for i, x in enumerate(v)])
        return check_seq
    if origin is dict or tp is dict:
        kc = _checker(args[0], owner, name) if args else _check_any
        vc = _checker(args[1], owner, name) if args else _check_any

        def check_dict(v: Any, path: str) -> Any:
            if v.__class__ is not dict:
                raise _wrong(path, "map", v)
            return {kc(k, f"{path}.key"): vc(x, f"{path}[{k!r:.20}]") for k, x in v.items()}
        return check_dict
    raise TypeError(f"{owner.__qualname__}.{name}: type {tp!r} is not supported in messages")


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "nil"
    return getattr(tp, "__name__", repr(tp))


_ANY_SCALARS = (str, int, float, bool, bytes, type(None))


def _check_any(v: Any, path: str) -> Any:
    """Any: msgpack-native data; maps carrying a tag decode as messages."""
    c = v.__class__
    if c in _ANY_SCALARS:
        return v
    if c is list:
        return [_check_any(x, path) for x in v]
    if c is dict:
        if TAG_KEY in v:
            return _decode_map(v, path)
        return {_check_any(k, path): _check_any(x, path) for k, x in v.items()}
    raise _wrong(path, "msgpack data", v)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------

def encode_value(v: Any) -> Any:
    """Turn a message (or data holding messages and enums) into msgpack-native data."""
    c = v.__class__
    if c in _ANY_SCALARS:
        return v
    spec = _specs.get(c)
    if spec is not None:
        out = {TAG_KEY: spec[0]}
        for f in spec[1]:
            out[f[0]] = encode_value(getattr(v, f[0]))
        return out
    if c is list or c is tuple or c is frozenset or c is set:
        return [encode_value(x) for x in v]
    if c is dict:
        return {encode_value(k): encode_value(x) for k, x in v.items()}
    if isinstance(v, enum.Enum):
        return v.value
    raise EncodeError(f"cannot encode {c.__qualname__}: not a registered message or msgpack-native value")


def encode(msg: Any) -> bytes:
    """Encode a registered message to bytes (raises EncodeError on our bugs)."""
    if type(msg) not in _specs:
        raise EncodeError(f"{type(msg).__qualname__} is not a registered message")
    try:
        data = msgpack.packb(encode_value(msg), use_bin_type=True)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise EncodeError(f"cannot encode {type(msg).__qualname__}: {e}") from None
    if len(data) > _max_frame:
        raise EncodeError(f"{type(msg).__qualname__} encodes to {len(data)} bytes, over the frame size limit of {_max_frame}")
    return data


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

def _decode_map(d: dict, path: str = "") -> Any:
    tag = d.get(TAG_KEY)
    if tag is None:
        raise DecodeError(f"no message tag ({TAG_KEY!r} key) in map{' at ' + path if path else ''}")
    cls = _by_tag.get(tag) if tag.__class__ is str else None
    if cls is None:
        raise DecodeError(f"unknown message tag {tag!r:.80}{' at ' + path if path else ''}")
    fields = _specs[cls][1]
    kwargs = {}
    prefix = f"{path}.{tag}" if path else tag
    for name, required, (is_factory, default), check in fields:
        try:
            v = d[name]
        except KeyError:
            if required:
                raise DecodeError(f"missing required field: {prefix}.{name}") from None
            kwargs[name] = default() if is_factory else default
            continue
        kwargs[name] = check(v, f"{prefix}.{name}")
    try:
        return cls(**kwargs)
    except DecodeError:
        raise
    except Exception as e:  # validators on the class reject the values
        raise DecodeError(f"field validation failed for {prefix}: {e}") from None


def decode_value(data: Any) -> Any:
    """Decode msgpack-native data holding a message map (the inverse of encode_value)."""
    if data.__class__ is not dict:
        raise DecodeError(f"a message must be a msgpack map, got {_type_name(data)}")
    return _decode_map(data)


def decode(data: bytes, max_size: int | None = None) -> Any:
    """Decode bytes into a registered message. Only DecodeError ever escapes."""
    limit = _max_frame if max_size is None else max_size
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"a frame must be bytes, got {type(data).__name__}")
    if len(data) > limit:
        raise DecodeError(f"frame of {len(data)} bytes is over the size limit of {limit}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, timestamp=0)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"not msgpack: {type(e).__name__}: {e}"[:200]) from None
    try:
        return decode_value(obj)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("message nested too deeply") from None
    except Exception as e:  # defensive: never let a peer crash us
        raise DecodeError(f"invalid message: {type(e).__name__}: {e}"[:200]) from None
