"""How a job's arguments travel: JSON always; pickle only where the deployment opts in.

JSON is the default and the only format a worker accepts unless ``Settings.serializer`` (env
``TASKFORGE_SERIALIZER``) is ``"pickle"``. Unpickling runs arbitrary code chosen by whoever wrote
the bytes, so a JSON worker dead-letters a pickle job (reason ``refused: ...``) without ever
unpickling it. Turn pickle on only when everyone who can write to Redis is trusted, and then on
producers and workers alike. A pickle job carries ``"serializer": "pickle"`` and one argument:
the base64 text of ``pickle.dumps((args, kwargs))``. Its result is pickled too, stored as the
JSON object ``{"$pickle": "<base64>"}``; only a client whose settings accept pickle unpickles it.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Sequence
from typing import Any

from taskforge.errors import SerializationError, SerializerRefusedError
from taskforge.job import Job

JSON = "json"
PICKLE = "pickle"


def dump_args(
    args: Sequence[Any], kwargs: dict[str, Any], serializer: str
) -> tuple[list[Any], dict[str, Any]]:
    """The ``args``/``kwargs`` members of an envelope made with ``serializer``.

    Raises:
        SerializationError: arguments pickle cannot carry.
    """
    if serializer == JSON:
        return list(args), kwargs
    if serializer == PICKLE:
        try:
            blob = pickle.dumps((tuple(args), dict(kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise SerializationError(f"arguments cannot be pickled: {exc}") from exc
        return [base64.b64encode(blob).decode("ascii")], {}
    raise SerializerRefusedError(f"unknown serializer {serializer!r}; use 'json' or 'pickle'")


#: The one key of a stored result that holds a pickle (base64).
PICKLED_RESULT = "$pickle"


def dump_result(value: Any) -> str:
    """A pickle job's result as stored: ``{"$pickle": "<base64>"}``.

    Raises:
        SerializationError: a value pickle cannot carry.
    """
    try:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise SerializationError(f"result cannot be pickled: {exc}") from exc
    return f'{{"{PICKLED_RESULT}":"{base64.b64encode(blob).decode("ascii")}"}}'


def is_pickled_result(value: Any) -> bool:
    """True for a stored result that :func:`dump_result` wrote."""
    return isinstance(value, dict) and len(value) == 1 and PICKLED_RESULT in value


def load_result(value: dict[str, str], accepted: str) -> Any:
    """The object a pickled result holds, if this client accepts pickle.

    Raises:
        SerializerRefusedError: this client accepts JSON only (nothing is unpickled).
    """
    if accepted != PICKLE:
        raise SerializerRefusedError(
            "the result was pickled (a pickle job); this client accepts JSON only: set "
            "TASKFORGE_SERIALIZER=pickle here too, on trusted deployments only"
        )
    return pickle.loads(base64.b64decode(value[PICKLED_RESULT], validate=True))


def load_job(job: Job, accepted: str) -> Job:
    """The job with its real arguments, if this worker accepts its serializer.

    ``accepted`` is the worker's ``Settings.serializer``: ``"json"`` accepts JSON only;
    ``"pickle"`` accepts both.

    Raises:
        SerializerRefusedError: the job's serializer is not accepted here (nothing is unpickled).
        ValueError: a pickle payload that cannot be read.
    """
    if job.serializer == JSON:
        return job
    if job.serializer != PICKLE:
        raise SerializerRefusedError(f"unknown serializer {job.serializer!r}")
    if accepted != PICKLE:
        raise SerializerRefusedError(
            "job uses the pickle serializer; this worker accepts JSON only (set "
            "TASKFORGE_SERIALIZER=pickle on trusted deployments to allow it)"
        )
    if len(job.args) != 1 or not isinstance(job.args[0], str) or job.kwargs:
        raise ValueError("pickle envelope must carry exactly one base64 argument")
    try:
        args, kwargs = pickle.loads(base64.b64decode(job.args[0], validate=True))
    # Unpickling runs whatever the payload says, so any error it raises is the payload's fault:
    # the job is poison, never a crashed worker.
    except Exception as exc:
        raise ValueError(f"unreadable pickle payload: {exc!r}") from exc
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise ValueError("pickle payload is not an (args, kwargs) pair")
    return job.model_copy(update={"args": list(args), "kwargs": kwargs})


__all__ = [
    "JSON",
    "PICKLE",
    "SerializerRefusedError",
    "dump_args",
    "dump_result",
    "is_pickled_result",
    "load_job",
    "load_result",
]
