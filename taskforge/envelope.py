"""Envelopes: a call made into the job the enqueue script writes, checked before anything is sent.

Pure: the arguments are serialized and JSON-encoded, the fields every job of one task shares
are encoded once per task and options, the middleware's headers added, the text signed when a
key is set and its size checked. Whatever cannot be sent raises here, with nothing written.
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
from taskforge.serializer import PICKLE, dump_args
from taskforge.settings import Settings
from taskforge.signing import sign, signing_key

#: One encoder for every envelope: ``json.dumps`` with options builds a new one per call. It
#: carries the typed values (datetime, UUID, ...; see taskforge.payload) through its default
#: hook, which plain JSON values never reach.
_ENVELOPE_JSON = json_encoder()


class EnvelopeEncoder:
    """Builds jobs from calls for one producer (:meth:`taskforge.client.Client.encode`)."""

    def __init__(self, settings: Settings, hooks: Hooks):
        self._settings = settings
        self._hooks = hooks
        self._tails: dict[tuple[str, TaskOptions, str], str] = {}

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
            args_json = _ENVELOPE_JSON.encode(args) if args else "[]"
            kwargs_json = _ENVELOPE_JSON.encode(kwargs) if kwargs else "{}"
            tail = self._fixed_fields(call.task, o, serializer)
        except (TypeError, ValueError, RecursionError) as exc:
            what = f"arguments of {call.task!r} cannot be sent as JSON"
            raise SerializationError(describe_refusal(what, call.args, call.kwargs, exc)) from exc
        check_args_json(args_json, call.task)
        check_args_json(kwargs_json, call.task)
        # The JSON object json.dumps would write (the worker decodes it with pydantic); the
        # fields every job of one task and its options share are encoded once.
        now_s = time.time()
        if o.expires is not None:  # per call: "60 s from now" differs for every call
            tail += f',"expires_ms":{expires_at_ms(o.expires, now_s)}'
        text = (
            f'{{"id":{_ENVELOPE_JSON.encode(job_id)},"args":{args_json},"kwargs":{kwargs_json},'
            f'"created_ms":{int(now_s * 1000)}{tail}{self._headers(job_id, call)}}}'
        )
        key = signing_key(self._settings)
        if key is not None:
            text = sign(text, key)
        size = len(text.encode())
        limit = self._settings.max_payload_bytes
        if size > limit:
            raise PayloadTooLargeError(
                f"job for {call.task!r} is {size} bytes, over the {limit}"
                "-byte limit (Settings.max_payload_bytes); store big data elsewhere, pass a key"
            )
        at_ms = -1 if call.run_at is None else int(call.run_at.timestamp() * 1000)
        new = NewJob(
            id=job_id,
            task=call.task,
            priority=o.priority,
            envelope=text,
            delay_ms=int(call.delay_s * 1000),
            at_ms=at_ms,
            unique_key=o.unique_key or "",
            unique_until=o.unique_until,
            unique_ttl_s=o.unique_ttl or 0.0,
        )
        return o.queue, new

    def _headers(self, job_id: str, call: Call) -> str:
        """The ``"headers"`` member the middleware's ``on_enqueue`` hooks write ('' if none)."""
        if not self._hooks:
            return ""
        headers = self._hooks.enqueue(Enqueueing(job_id, call.task, call.options.queue))
        return f',"headers":{_ENVELOPE_JSON.encode(headers)}' if headers else ""

    def _fixed_fields(self, task: str, o: TaskOptions, serializer: str) -> str:
        key = (task, o, serializer)
        tail = self._tails.get(key)
        if tail is None:
            fields: dict[str, Any] = {
                "task": task,
                "queue": o.queue,
                "priority": o.priority.value,
                "max_retries": o.max_retries,
                "retry_backoff_s": o.retry_backoff,
                "retry_backoff_cap_s": o.retry_backoff_cap,
                "retry_jitter": o.retry_jitter,
                "timeout_s": o.timeout,
            }
            if o.soft_timeout is not None:
                fields["soft_timeout_s"] = o.soft_timeout
            if serializer == PICKLE:
                fields["serializer"] = serializer
            tail = "," + _ENVELOPE_JSON.encode(fields)[1:-1]
            if len(self._tails) >= 1024:  # options made per call (unique keys...): stay bounded
                self._tails.clear()
            self._tails[key] = tail
        return tail


__all__ = ["EnvelopeEncoder"]
