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

# tag -> class, class -> tag, and class -> spec. Specs are built on first use
# (so a message may refer to itself or to classes registered after it); see
# _spec. check(wire_value, path) -> value; enc(value, path) -> wire_value.
_by_tag: dict[str, type] = {}
_tags: dict[type, str] = {}
_specs: dict[type, tuple[str, tuple, bool]] = {}

Check = Callable[[Any, str], Any]


def _is_frozen(cls: type) -> bool:
    setattr_ = cls.__dict__.get("__setattr__") or getattr(cls, "__setattr__", None)
    return getattr(setattr_, "__name__", "") == "_frozen_setattrs"


def message(tag: str) -> Callable[[type], type]:
    """Register a message class under a stable wire tag.

    The class may be a plain annotated class (it is made ``attrs.frozen``) or an
    attrs class already; either way it must be frozen. Tags are unique per
    process: registering a second class under a used tag is a bug (the same
    class re-registered, e.g. on module reload, replaces the old one).
    """
    if not isinstance(tag, str) or not tag or "." not in tag:
        raise ValueError(f"message tag must look like 'proto.Name', got {tag!r}")

    def register(cls: type) -> type:
        if not attrs.has(cls):
            cls = attrs.frozen(cls)
        elif not _is_frozen(cls):
            raise TypeError(f"{cls.__qualname__}: messages must be frozen attrs classes")
        previous = _by_tag.get(tag)
        if previous is not None and (previous.__module__, previous.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"message tag {tag!r} is already used by {previous.__module__}.{previous.__qualname__}")
        for f in attrs.fields(cls):
            if isinstance(f.default, attrs.Factory) and f.default.takes_self:  # type: ignore[arg-type]
                raise TypeError(f"{cls.__qualname__}.{f.name}: Factory(takes_self=True) defaults are not supported in messages")
        if previous is not None:
            _tags.pop(previous, None)
            _specs.pop(previous, None)
        _by_tag[tag] = cls
        _tags[cls] = tag
        cls.__fleetplane_tag__ = tag  # type: ignore[attr-defined]
        return cls

    return register


def _spec(cls: type) -> tuple[str, tuple, bool]:
    """The (tag, fields, positional) spec of a registered class, built on first use.

    Each field is (name, alias, required, (is_factory, default), check, enc,
    path, exact) where ``path`` is the field's top-level error path
    ``tag.name`` and ``exact`` the field's type when a class identity test is
    the whole check (int, str, bytes, bool);
    ``positional`` says the class can be built as ``cls(*values)``.
    """
    spec = _specs.get(cls)
    if spec is not None:
        return spec
    tag = _tags[cls]
    attrs.resolve_types(cls)
    fields = []
    positional = True
    for f in attrs.fields(cls):
        if not f.init:
            continue
        if f.kw_only:
            positional = False
        default = f.default
        required = default is attrs.NOTHING
        fill = (True, default.factory) if isinstance(default, attrs.Factory) else (False, default)  # type: ignore[arg-type]
        alias = getattr(f, "alias", None) or f.name.lstrip("_")
        check, enc = _codecs(f.type, cls, f.name)
        exact = f.type if f.type in (int, str, bytes, bool) else None  # checked inline on the hot path
        fields.append((f.name, alias, required, fill, check, enc, f"{tag}.{f.name}", exact))
    spec = (tag, tuple(fields), positional)
    _specs[cls] = spec
    return spec


def is_message(obj: Any) -> bool:
    return type(obj) in _tags


def tag_of(cls_or_obj: Any) -> str:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    try:
        return _tags[cls]
    except KeyError:
        raise EncodeError(f"{cls.__qualname__} is not a registered message") from None


def registered() -> dict[str, type]:
    """A copy of the tag -> class registry."""
    return dict(_by_tag)


# --------------------------------------------------------------------------
# Field codecs, built once per field from its annotation:
#   check(wire_value, path) -> value        (DecodeError: the peer's fault)
#   enc(value, path)        -> wire_value   (EncodeError: our fault)
# --------------------------------------------------------------------------

_PRIMITIVE_NAMES = {int: "int", float: "float", str: "str", bytes: "bytes", bool: "bool", type(None): "nil"}
_SCALARS = (str, int, float, bool, bytes, type(None))


def _type_name(v: Any) -> str:
    if isinstance(v, dict) and TAG_KEY in v:
        return f"message {v.get(TAG_KEY)!r:.60}"
    return _PRIMITIVE_NAMES.get(type(v), type(v).__name__)


def _wrong(path: str, want: str, v: Any) -> DecodeError:
    return DecodeError(f"wrong field type: {path} expects {want}, got {_type_name(v)}")


def _bad(path: str, want: str, v: Any) -> EncodeError:
    return EncodeError(f"cannot encode {path}: expects {want}, got {type(v).__qualname__}")


def _describe(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "nil"
    if isinstance(tp, type) and tp in _tags:
        return f"message {_tags[tp]!r}"
    return getattr(tp, "__name__", None) or repr(tp)


def _exact(t: type, want: str) -> tuple[Check, Check]:
    def check(v: Any, path: str) -> Any:
        if v.__class__ is not t:
            raise _wrong(path, want, v)
        return v

    def enc(v: Any, path: str) -> Any:
        if v.__class__ is not t:
            raise _bad(path, want, v)
        return v
    return check, enc


def _codecs(tp: Any, owner: type, name: str) -> tuple[Check, Check]:
    """(check, enc) for annotation ``tp`` of field ``owner.name``."""
    if tp is None or tp is type(None):
        return _exact(type(None), "nil")
    if tp is Any or tp is object:
        return _check_any, _enc_any
    if tp in (bool, int, str, bytes):
        return _exact(tp, _PRIMITIVE_NAMES[tp])
    if tp is float:
        def check_float(v: Any, path: str) -> Any:
            c = v.__class__
            if c is float:
                return v
            if c is int:
                return float(v)
            raise _wrong(path, "float", v)

        def enc_float(v: Any, path: str) -> Any:
            c = v.__class__
            if c is float or c is int:
                return v
            raise _bad(path, "float", v)
        return check_float, enc_float
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = {m.value: m for m in tp}
        want = f"one of {tp.__name__} {sorted(map(repr, members))}"

        def check_enum(v: Any, path: str) -> Any:
            try:
                m = members.get(v)
            except TypeError:
                m = None
            if m is None or m.value.__class__ is not v.__class__:
                raise DecodeError(f"wrong field type: {path} expects {want}, got {v!r:.40}")
            return m

        def enc_enum(v: Any, path: str) -> Any:
            if v.__class__ is not tp:
                raise _bad(path, tp.__name__, v)
            return v.value
        return check_enum, enc_enum
    if isinstance(tp, type) and attrs.has(tp):
        if tp not in _tags:
            raise TypeError(f"{owner.__qualname__}.{name}: {tp.__qualname__} is not a registered message")
        want_cls = tp

        def check_nested(v: Any, path: str) -> Any:
            if v.__class__ is not dict:
                raise _wrong(path, f"message {_tags[want_cls]!r}", v)
            msg = _decode_map(v, path)
            if msg.__class__ is not want_cls:
                raise DecodeError(f"wrong field type: {path} expects message {_tags[want_cls]!r}, got {_tags[msg.__class__]!r}")
            return msg

        def enc_nested(v: Any, path: str) -> Any:
            if v.__class__ is not want_cls:
                raise _bad(path, f"message {_tags[want_cls]!r}", v)
            return _encode_message(v, path)
        return check_nested, enc_nested

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_codecs(args, owner, name)
    if origin is typing.Literal:
        allowed = {(a.__class__, a) for a in args}
        want = f"one of {sorted(map(repr, args))}"

        def check_literal(v: Any, path: str) -> Any:
            if v.__class__ not in _SCALARS or (v.__class__, v) not in allowed:
                raise DecodeError(f"wrong field type: {path} expects {want}, got {v!r:.40}")
            return v

        def enc_literal(v: Any, path: str) -> Any:
            if v.__class__ not in _SCALARS or (v.__class__, v) not in allowed:
                raise EncodeError(f"cannot encode {path}: expects {want}, got {v!r:.40}")
            return v
        return check_literal, enc_literal
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [_codecs(a, owner, name) for a in args]

        def check_fixed(v: Any, path: str) -> Any:
            if v.__class__ is not list or len(v) != len(items):
                raise _wrong(path, f"array of {len(items)}", v)
            return tuple(c[0](x, f"{path}[{i}]") for i, (c, x) in enumerate(zip(items, v)))

        def enc_fixed(v: Any, path: str) -> Any:
            if v.__class__ not in (tuple, list) or len(v) != len(items):
                raise _bad(path, f"a sequence of {len(items)}", v)
            return [c[1](x, f"{path}[{i}]") for i, (c, x) in enumerate(zip(items, v))]
        return check_fixed, enc_fixed
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple, frozenset, set):
        item_check, item_enc = _codecs(args[0], owner, name) if args else (_check_any, _enc_any)
        make = {list: list, tuple: tuple, frozenset: frozenset, set: frozenset}[origin or tp]

        def check_seq(v: Any, path: str) -> Any:
            if v.__class__ is not list:
                raise _wrong(path, "array", v)
            try:
                return make([item_check(x, path) for x in v])
            except DecodeError:  # say which item (paths are built only on this slow path)
                for i, x in enumerate(v):
                    item_check(x, f"{path}[{i}]")
                raise

        def enc_seq(v: Any, path: str) -> Any:
            if v.__class__ not in (list, tuple, frozenset, set):
                raise _bad(path, "a sequence", v)
            try:
                return [item_enc(x, path) for x in v]
            except EncodeError:
                for i, x in enumerate(v):
                    item_enc(x, f"{path}[{i}]")
                raise
        return check_seq, enc_seq
    if origin is dict or tp is dict:
        if args and typing.get_origin(args[0]) in (tuple, list, dict, set, frozenset):
            raise TypeError(f"{owner.__qualname__}.{name}: map keys must be scalars, not {args[0]!r}")
        kc, ke = _codecs(args[0], owner, name) if args else (_check_any, _enc_any)
        vc, ve = _codecs(args[1], owner, name) if args else (_check_any, _enc_any)

        def check_dict(v: Any, path: str) -> Any:
            if v.__class__ is not dict:
                raise _wrong(path, "map", v)
            return {kc(k, f"{path}.key"): vc(x, f"{path}[{k!r:.20}]") for k, x in v.items()}

        def enc_dict(v: Any, path: str) -> Any:
            if v.__class__ is not dict:
                raise _bad(path, "dict", v)
            return {ke(k, f"{path}.key"): ve(x, f"{path}[{k!r:.20}]") for k, x in v.items()}
        return check_dict, enc_dict
    raise TypeError(f"{owner.__qualname__}.{name}: type {tp!r} is not supported in messages")


def _union_codecs(args: tuple, owner: type, name: str) -> tuple[Check, Check]:
    options = [a for a in args if a is not type(None)]
    nullable = len(options) != len(args)
    subs = [_codecs(a, owner, name) for a in options]
    want = " | ".join(_describe(a) for a in args)
    # A tagged map picks its option by tag: exact errors, and no re-decoding per option.
    by_tag = {_tags[a]: c for a, c in zip(options, subs) if isinstance(a, type) and a in _tags}
    by_cls = {a: c for a, c in zip(options, subs) if isinstance(a, type) and a in _tags}

    def check_union(v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        if len(subs) == 1:
            return subs[0][0](v, path)
        if v.__class__ is dict and by_tag:
            sub = by_tag.get(v.get(TAG_KEY))
            if sub is not None:
                return sub[0](v, path)
        for sub in subs:
            try:
                return sub[0](v, path)
            except DecodeError:
                continue
        raise _wrong(path, want, v)

    def enc_union(v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        sub = by_cls.get(v.__class__)
        if sub is not None:
            return sub[1](v, path)
        for sub in subs:
            try:
                return sub[1](v, path)
            except EncodeError:
                continue
        raise _bad(path, want, v)
    return check_union, enc_union


def _check_any(v: Any, path: str) -> Any:
    """Any: msgpack-native data; maps carrying a tag decode as messages."""
    c = v.__class__
    if c in _SCALARS:
        return v
    if c is list:
        return [_check_any(x, path) for x in v]
    if c is dict:
        if TAG_KEY in v:
            return _decode_map(v, path)
        return {_check_any(k, path): _check_any(x, path) for k, x in v.items()}
    raise _wrong(path, "msgpack data", v)


def _enc_any(v: Any, path: str) -> Any:
    c = v.__class__
    if c in _SCALARS:
        return v
    if c in _tags:
        return _encode_message(v, path)
    if c is list or c is tuple or c is frozenset or c is set:
        return [_enc_any(x, path) for x in v]
    if c is dict:
        if TAG_KEY in v:
            raise EncodeError(f"cannot encode {path}: a plain map may not use the reserved key {TAG_KEY!r}")
        return {_enc_any(k, path): _enc_any(x, path) for k, x in v.items()}
    if isinstance(v, enum.Enum):
        return v.value
    raise EncodeError(f"cannot encode {path}: {c.__qualname__} is not a registered message or msgpack-native value")


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------

def _encode_message(msg: Any, path: str = "") -> dict:
    spec = _specs.get(msg.__class__) or _spec(msg.__class__)
    out = {TAG_KEY: spec[0]}
    if path:  # nested: error paths name the enclosing field
        for f in spec[1]:
            out[f[0]] = f[5](getattr(msg, f[0]), f"{path}.{f[0]}")
    else:
        for f in spec[1]:
            v = getattr(msg, f[0])
            out[f[0]] = v if v.__class__ is f[7] else f[5](v, f[6])
    return out


def encode_value(v: Any) -> Any:
    """Turn a message (or data holding messages and enums) into msgpack-native data."""
    return _enc_any(v, "value")


def encode(msg: Any) -> bytes:
    """Encode a registered message to bytes (raises EncodeError on our bugs)."""
    if msg.__class__ not in _tags:
        raise EncodeError(f"{type(msg).__qualname__} is not a registered message")
    try:
        data = msgpack.packb(_encode_message(msg), use_bin_type=True)
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
    _, fields, positional = _specs.get(cls) or _spec(cls)
    values = []
    for name, _, required, (is_factory, default), check, _, fpath, exact in fields:
        try:
            v = d[name]
        except KeyError:
            if required:
                raise DecodeError(f"missing required field: {path + '.' + name if path else fpath}") from None
            values.append(default() if is_factory else default)
            continue
        values.append(v if v.__class__ is exact else check(v, f"{path}.{name}" if path else fpath))
    try:
        if positional:
            return cls(*values)
        return cls(**{f[1]: v for f, v in zip(fields, values)})
    except DecodeError:
        raise
    except Exception as e:  # validators on the class reject the values
        raise DecodeError(f"field validation failed for {path or tag}: {e}") from None


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
        detail = str(e) or "invalid or reserved byte"
        raise DecodeError(f"not msgpack: {type(e).__name__}: {detail}"[:200]) from None
    try:
        return decode_value(obj)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("message nested too deeply") from None
    except Exception as e:  # defensive: never let a peer crash us
        raise DecodeError(f"invalid message: {type(e).__name__}: {e}"[:200]) from None
