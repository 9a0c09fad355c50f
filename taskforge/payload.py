"""Typed payloads: the values JSON cannot carry on its own, on the wire and back.

On the way out, a job's arguments and a task's result go through one JSON encoder whose
``default`` hook turns the *carried types* into JSON: ``datetime``/``date``/``time`` (ISO 8601),
``timedelta`` (ISO 8601 duration), ``UUID`` and ``Decimal`` (strings), ``bytes`` (base64), enums
(their value) and pydantic models (``model_dump(mode="json")``). Plain JSON values never reach
the hook, so they cost what they cost before. Anything else is refused, naming its type and
where it sits (``args[1]["when"]``).

On the way in, the worker validates the arguments against the task's signature with one pydantic
``TypeAdapter`` per task, built on its first job: ``def f(when: datetime)`` receives a
``datetime``. A task whose annotations are all plain (none, ``Any``, ``str``, ``int``, ``float``,
``bool``, ``list``, ``dict``) skips validation. ``handle.result()`` types a result by the task's
return annotation the same way, where the caller's app registered the task.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, NotRequired
from uuid import UUID

import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from taskforge.errors import ArgumentsError

log = logging.getLogger(__name__)

#: The types the encoder carries besides plain JSON (enums and models by base class).
CARRIED: tuple[type, ...] = (datetime, date, time, timedelta, UUID, Decimal, bytes, Enum, BaseModel)
#: Annotations that need no validation: the JSON value already is the value the task gets.
PLAIN_ANNOTATIONS: frozenset[Any] = frozenset(
    {Any, str, int, float, bool, None, type(None), list, dict, inspect.Parameter.empty}
)
#: bytes travel as base64 both ways (pydantic's JSON default would be UTF-8, which refuses
#: arbitrary bytes).
_BYTES_CONFIG = ConfigDict(val_json_bytes="base64", ser_json_bytes="base64")


def to_json_value(value: Any) -> Any:
    """The encoder's ``default`` hook: a carried value as JSON data; TypeError otherwise."""
    if isinstance(value, CARRIED):
        return pydantic_core.to_jsonable_python(value, bytes_mode="base64")
    raise TypeError(f"{type(value).__qualname__} is not a carried type")


def json_encoder() -> json.JSONEncoder:
    """A compact, NaN-refusing encoder that carries the typed values (reuse it: building one
    per call costs more than a small encode)."""
    return json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=to_json_value)


def find_uncarried(value: Any, path: str) -> tuple[str, str] | None:
    """``(path, type name)`` of the first value in ``value`` the encoder refuses, or None."""
    if value is None or isinstance(value, (str, bool, int, *CARRIED)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"float {value}")
    if isinstance(value, list | tuple):
        return _first(find_uncarried(item, f"{path}[{i}]") for i, item in enumerate(value))
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path} key {key!r}", type(key).__qualname__
        return _first(find_uncarried(item, f"{path}[{key!r}]") for key, item in value.items())
    return path, f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")


def _first(found: Iterable[tuple[str, str] | None]) -> tuple[str, str] | None:
    return next((f for f in found if f is not None), None)


def describe_refusal(what: str, args: Any, kwargs: dict[str, Any], cause: BaseException) -> str:
    """Why ``args``/``kwargs`` cannot be encoded, naming the type and its path."""
    try:
        found = find_uncarried(list(args), "args") or find_uncarried(kwargs, "kwargs")
    except RecursionError:  # nested past the recursion limit (or holding itself)
        found = None
    where = f"{found[0]} is a {found[1]}, which" if found else f"{cause}:"
    return (
        f"{what}: {where} JSON cannot carry; pass plain data (str, int, float, bool, None, "
        "list, dict), a datetime/date/time/timedelta, UUID, Decimal, bytes, an enum or a "
        "pydantic model, or an id the task can load"
    )


# --------------------------------------------------------------------------- the worker side


@dataclass(frozen=True, slots=True)
class TypedSignature:
    """How one task's arguments are typed at the worker (None adapter: all plain, skipped)."""

    signature: inspect.Signature
    adapter: TypeAdapter[dict[str, Any]] | None
    returns: TypeAdapter[Any] | None


_signatures: dict[Callable[..., Any], TypedSignature] = {}


def signature_of(fn: Callable[..., Any]) -> TypedSignature:
    """The (cached) typed signature of ``fn``."""
    found = _signatures.get(fn)
    if found is None:
        found = _signatures[fn] = _build(fn)
    return found


def _build(fn: Callable[..., Any]) -> TypedSignature:
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # an annotation that does not resolve: run untyped, say so once
        log.warning("task %s: annotations not resolvable (%s); arguments are not typed", fn, exc)
        return TypedSignature(sig, None, None)
    fields: dict[str, Any] = {}
    for p in sig.parameters.values():
        ann = hints.get(p.name, Any)
        if p.kind is p.VAR_POSITIONAL:
            ann = tuple[ann, ...]  # type: ignore[valid-type]
        elif p.kind is p.VAR_KEYWORD:
            ann = dict[str, ann]  # type: ignore[valid-type]
        elif p.default is not p.empty:
            ann = NotRequired[ann]
        fields[p.name] = ann
    plain = all(_is_plain(hints.get(p.name, Any)) for p in sig.parameters.values())
    adapter = None if plain else _adapter_of_fields(fields)
    ret = hints.get("return", Any)
    returns = None if _is_plain(ret) else TypeAdapter(ret, config=_config_for(ret))
    return TypedSignature(sig, adapter, returns)


#: typing_extensions' TypedDict: pydantic needs it on Python < 3.12. Called, not subclassed: the
#: fields are the task's parameters, known only at run time.
_make_typed_dict: Any = TypedDict


def _adapter_of_fields(fields: dict[str, Any]) -> TypeAdapter[dict[str, Any]]:
    args: Any = _make_typed_dict("Args", fields)
    args.__pydantic_config__ = _BYTES_CONFIG
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(args)
    return adapter


def _is_plain(annotation: Any) -> bool:
    try:
        return annotation in PLAIN_ANNOTATIONS
    except TypeError:  # an unhashable annotation
        return False


def _config_for(annotation: Any) -> ConfigDict | None:
    # pydantic refuses a config for types that carry their own (models, dataclasses...).
    try:
        TypeAdapter(annotation, config=_BYTES_CONFIG)
    except Exception:
        return None
    return _BYTES_CONFIG


_ARGS_JSON = json_encoder()


def typed_arguments(
    fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` validated to ``fn``'s annotations; unchanged when all are plain.

    Raises:
        ArgumentsError: they do not bind to the signature, or do not validate.
    """
    typed = signature_of(fn)
    if typed.adapter is None:
        return tuple(args), kwargs
    try:
        bound = typed.signature.bind(*args, **kwargs)
        text = _ARGS_JSON.encode(bound.arguments)
        bound.arguments.update(typed.adapter.validate_json(text))
    except (TypeError, ValueError) as exc:  # ValidationError is a ValueError
        raise ArgumentsError(f"arguments do not fit {fn.__qualname__}: {exc}") from exc
    return bound.args, bound.kwargs


def typed_result(fn: Callable[..., Any], value: Any) -> Any:
    """A stored (JSON) result as ``fn``'s return annotation says; unchanged when plain.

    Raises:
        ValidationError: the stored value does not fit the annotation.
    """
    returns = signature_of(fn).returns
    if returns is None:
        return value
    return returns.validate_json(_ARGS_JSON.encode(value))


__all__ = [
    "CARRIED",
    "ArgumentsError",
    "ValidationError",
    "describe_refusal",
    "find_uncarried",
    "json_encoder",
    "signature_of",
    "to_json_value",
    "typed_arguments",
    "typed_result",
]
