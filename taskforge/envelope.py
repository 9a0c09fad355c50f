"""Calls made into job records for the enqueue script, checked before anything is sent.

Pure: the arguments are serialized and JSON-encoded, the options that differ from the task's
registered ones collected (once per task and options), the middleware's headers added, the
fields signed when a key is set and their size checked. Whatever cannot be sent raises here,
with nothing written. The record's layout is in the README, "Redis data model".
"""

from __future__ import annotations

import time
from typing import Any

from taskforge.call import Call
from taskforge.callcheck import check_args_json, check_job_id
from taskforge.errors import EnqueueError, PayloadTooLargeError, SerializationError
from taskforge.job import new_job_id
from taskforge.middleware import Enqueueing, Hooks
from taskforge.options import TaskOptions, expires_at_ms
from taskforge.payload import describe_refusal, json_encoder
from taskforge.protocol.records import NewJob
from taskforge.registry import Registry
from taskforge.serializer import PICKLE, dump_args
from taskforge.settings import Settings
from taskforge.signing import sign_fields, signing_key

#: One encoder for every record field: ``json.dumps`` with options builds a new one per call.
#: It carries the typed values (datetime, UUID, ...; see taskforge.payload) through its default
#: hook, which plain JSON values never reach.
_JSON = json_encoder()
#: The options of a task nobody registered here (a call sent by name): its explicit ones differ.
_UNREGISTERED = TaskOptions(name="-").job_options()


class EnvelopeEncoder:
    """Builds jobs from calls for one producer (:meth:`taskforge.client.Client.encode`).

    ``registry`` holds the tasks this producer knows: a call's options that equal the task's
    registered ones stay out of the record (the worker reads them from its own registry).
    """

    def __init__(self, settings: Settings, hooks: Hooks, registry: Registry | None = None):
        self._settings = settings
        self._hooks = hooks
        self._registry = registry
        self._overrides: dict[tuple[str, TaskOptions, str], dict[str, Any]] = {}

    def encode(self, call: Call) -> tuple[str, NewJob]:
        """Build a job from a call: (queue, job). Raises EnqueueError subclasses; pure."""
        o = call.options
        if call.partial:
            raise EnqueueError(
                f"call of {call.task!r} is missing an argument (a partial signature, for a "
                "workflow step after another); give all its arguments to send it alone"
            )
        job_id = check_job_id(o.job_id) if o.job_id else new_job_id()
        serializer = self._settings.serializer
        args, kwargs = dump_args(call.args, call.kwargs, serializer)
        try:
            args_json = _JSON.encode(args) if args else ""
            kwargs_json = _JSON.encode(kwargs) if kwargs else ""
            overrides = self._options(call.task, o, serializer)
            if o.expires is not None:  # per call: "60 s from now" differs for every call
                overrides = {**overrides, "expires_ms": expires_at_ms(o.expires, time.time())}
        except (TypeError, ValueError, RecursionError) as exc:
            what = f"arguments of {call.task!r} cannot be sent as JSON"
            raise SerializationError(describe_refusal(what, call.args, call.kwargs, exc)) from exc
        headers = self._headers(job_id, call)
        if headers:
            overrides = {**overrides, "headers": headers}
        options_json = _JSON.encode(overrides) if overrides else ""
        fields: list[str] = []
        if args_json:
            check_args_json(args_json, call.task)
            fields += ("a", args_json)
        if kwargs_json:
            check_args_json(kwargs_json, call.task)
            fields += ("k", kwargs_json)
        if options_json:
            fields += ("o", options_json)
        size = len(args_json.encode()) + len(kwargs_json.encode()) + len(options_json.encode())
        limit = self._settings.max_payload_bytes
        if size > limit:
            raise PayloadTooLargeError(
                f"job for {call.task!r} is {size} bytes, over the {limit}"
                "-byte limit (Settings.max_payload_bytes); store big data elsewhere, pass a key"
            )
        key = signing_key(self._settings)
        if key is not None:
            texts = (job_id, call.task, o.queue, args_json, kwargs_json, options_json)
            fields += ("g", sign_fields(key, texts))
        at_ms = -1 if call.run_at is None else int(call.run_at.timestamp() * 1000)
        new = NewJob(
            id=job_id,
            task=call.task,
            priority=o.priority,
            fields=tuple(fields),
            delay_ms=int(call.delay_s * 1000),
            at_ms=at_ms,
            unique_key=o.unique_key or "",
            unique_until=o.unique_until,
            unique_ttl_s=o.unique_ttl or 0.0,
            given_id=bool(o.job_id),
        )
        return o.queue, new

    def _headers(self, job_id: str, call: Call) -> dict[str, str]:
        """What the middleware's ``on_enqueue`` hooks write (empty if none)."""
        if not self._hooks:
            return {}
        return self._hooks.enqueue(Enqueueing(job_id, call.task, call.options.queue)) or {}

    def _options(self, task: str, o: TaskOptions, serializer: str) -> dict[str, Any]:
        """The call's options that differ from the task's registered ones (shared: not to be
        changed), computed once per task, options and serializer."""
        key = (task, o, serializer)
        found = self._overrides.get(key)
        if found is None:
            registry = self._registry
            base = _UNREGISTERED
            if registry is not None and task in registry:
                base = registry.get(task).opts.job_options()
            found = {n: v for n, v in o.job_options().items() if v != base[n]}
            if serializer == PICKLE:
                found["serializer"] = serializer
            if len(self._overrides) >= 1024:  # options made per call (unique keys...): bounded
                self._overrides.clear()
            self._overrides[key] = found
        return found


__all__ = ["EnvelopeEncoder"]
