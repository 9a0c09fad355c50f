"""Server-Sent Events: stream one job's status updates from ``job:updates``; no new dependency.

    REDIS_URL=redis://localhost:6379/0 python examples/sse_job_updates.py --port 8000
    curl -N localhost:8000/jobs/<job_id>/events

``create_app()`` gives a plain ASGI application (mount it in uvicorn, hypercorn or any ASGI server);
``serve`` runs it on a minimal HTTP/1.1 server built on anyio, so the example needs nothing
beyond taskforge. The stream sends ``: subscribed`` once it listens, then one ``data: {...}``
event per status change of the job, and ends after a final status (succeeded, dead,
cancelled). A job that already finished gets its final status at once.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import aclosing, suppress
from typing import Any

import anyio
import anyio.abc

from taskforge import (
    JobNotFoundError,
    JobStatus,
    RedisClient,
    Taskforge,
    default_app,
    get_redis_client,
)
from taskforge.job import TERMINAL
from taskforge.pubsub import JOB_UPDATES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FINAL = {status.value for status in TERMINAL}
ROUTE = re.compile(r"^/jobs/(?P<job_id>[A-Za-z0-9_.:\-]{1,200})/events$")


def create_app(tf: Taskforge | None = None, events: RedisClient | None = None) -> ASGIApp:
    """The ASGI app: ``GET /jobs/{job_id}/events[?queue=name]`` streams that job's updates.

    ``tf`` (for the job's current status) defaults to the default app and ``events`` to
    ``get_redis_client()``; creating the app connects to nothing.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        match = ROUTE.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "GET":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not found\n"})
            return
        query = scope["query_string"].decode().split("&")
        queue = dict(p.split("=", 1) for p in query if "=" in p).get("queue", "default")
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        redis = events or await get_redis_client()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            await _stream(tf or default_app, redis, match["job_id"], queue, send)
            tg.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def _stream(tf: Taskforge, redis: RedisClient, job_id: str, queue: str, send: Send) -> None:
    lock = anyio.Lock()  # two tasks write to one response

    async def write(body: bytes) -> None:
        async with lock:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def event(data: dict[str, Any]) -> None:
        await write(f"data: {json.dumps(data)}\n\n".encode())

    subscribed = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def catch_up() -> None:
            # Read the record only once subscribed, so no transition falls between the two.
            await subscribed.wait()
            await write(b": subscribed\n\n")
            status = await _current_status(tf, job_id, queue)
            if status in TERMINAL:
                await event({"job_id": job_id, "queue": queue, "status": status.value})
                tg.cancel_scope.cancel()

        tg.start_soon(catch_up)
        async with aclosing(redis.subscribe(JOB_UPDATES, ready=subscribed)) as updates:
            async for message in updates:
                data = message["data"]
                if data.get("job_id") == job_id:
                    await event(data)
                    if data.get("status") in FINAL:
                        break
        tg.cancel_scope.cancel()


async def _current_status(tf: Taskforge, job_id: str, queue: str) -> JobStatus | None:
    try:
        return await tf.handle(job_id, queue=queue).astatus()
    except JobNotFoundError:
        return None


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


# ---------------------------------------------------------------- a minimal HTTP/1.1 server


async def serve(
    asgi: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``asgi`` over HTTP/1.1 (one request per connection, body streamed until close)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
    await listener.serve(lambda stream: _handle(asgi, stream))


async def _handle(asgi: Callable[..., Awaitable[None]], stream: anyio.abc.ByteStream) -> None:
    async with stream:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            head += await stream.receive()
        request_line, *header_lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        path, _, query = target.partition("?")
        headers = [
            (k.strip().lower().encode(), v.strip().encode())
            for k, v in (line.split(":", 1) for line in header_lines if ":" in line)
        ]
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": headers,
        }
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                lines = [f"HTTP/1.1 {message['status']} {'OK' if message['status'] < 400 else ''}"]
                lines += [f"{k.decode()}: {v.decode()}" for k, v in message.get("headers", [])]
                lines += ["connection: close", "", ""]
                await stream.send("\r\n".join(lines).encode("latin-1"))
            elif message.get("body"):
                await stream.send(message["body"])

        # The client may go away mid-stream; that ends this response, nothing else.
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await asgi(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    anyio.run(serve, create_app(), args.host, args.port)


if __name__ == "__main__":
    main()
