"""What a worker can decode, checked at the call: nesting depth, lone surrogates, job ids.

A worker decodes envelopes with pydantic's JSON parser, which refuses text nested deeper than
200 levels and ``\\ud800``-style escapes of lone surrogates. A job the worker cannot decode is
dead-lettered as poison; these checks refuse it at ``.delay()`` instead, with nothing written.
Both run on the encoded JSON text and cost a ``str.count`` or two on ordinary arguments.
"""

from __future__ import annotations

import json
import re

from taskforge.errors import ConfigurationError, SerializationError

#: Containers (lists, dicts) one argument may nest: the worker's parser stops at 200 levels,
#: and the envelope object and its ``args`` list (or ``kwargs`` object) take two of them.
MAX_ARG_DEPTH = 198
#: Longest job id (the envelope's own limit).
MAX_JOB_ID_CHARS = 200

# Strings in JSON text: skipped when measuring depth (brackets inside them do not nest).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def check_args_json(text: str, task: str) -> None:
    """Refuse the encoded ``args`` list or ``kwargs`` object if a worker could not decode it.

    Raises:
        SerializationError: an argument nests deeper than :data:`MAX_ARG_DEPTH`, or a string
            holds a lone surrogate (not text: it cannot be UTF-8).
    """
    # Fast path: fewer brackets in all than the limit means it cannot nest that deep.
    if text.count("[") + text.count("{") > MAX_ARG_DEPTH:
        depth = _depth(text) - 1  # the args list / kwargs object itself
        if depth > MAX_ARG_DEPTH:
            raise SerializationError(
                f"arguments of {task!r} nest {depth} lists/dicts deep; a worker decodes at most"
                f" {MAX_ARG_DEPTH}: flatten the data or store it elsewhere and pass a key"
            )
    if "\\ud" in text and not _is_utf8(text):
        raise SerializationError(
            f"arguments of {task!r} hold a string with a lone surrogate (not valid Unicode "
            "text): decode bytes with errors='replace', or send them as base64"
        )


def _depth(text: str) -> int:
    deepest = level = 0
    for char in re.findall(r"[\[\]{}]", _JSON_STRING.sub("", text)):
        level += 1 if char in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def _is_utf8(text: str) -> bool:
    # The encoder escapes every non-ASCII character; only real text re-encodes as UTF-8.
    try:
        json.dumps(json.loads(text), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if a worker can carry it (1-200 characters of valid text).

    Raises:
        ConfigurationError: an empty or too long id, or one with a lone surrogate.
    """
    if not job_id or len(job_id) > MAX_JOB_ID_CHARS:
        raise ConfigurationError(
            f"job id must be 1-{MAX_JOB_ID_CHARS} characters, got {len(job_id)}: use a shorter"
            " id (a hash of a long natural key, for instance)"
        )
    if not job_id.isascii():
        try:
            job_id.encode()
        except UnicodeEncodeError:
            raise ConfigurationError(
                f"job id {job_id!r} holds a lone surrogate (not valid Unicode text); use text ids"
            ) from None
    return job_id


__all__ = ["MAX_ARG_DEPTH", "MAX_JOB_ID_CHARS", "check_args_json", "check_job_id"]
