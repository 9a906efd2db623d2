"""What the server admits: a request's size (--max-body), its content type, and one-line refusals.

A body over the cap is refused with 413 before it is read: at once when its Content-Length says
so, else (chunked) as soon as what arrived passes the cap. So a request costs the server at most
the cap in body bytes, however large the client claims or sends it to be. The same cap holds for
REST bodies once gzip is inflated and for gRPC messages. A REST body sent without a JSON content
type (curl's `-d` says application/x-www-form-urlencoded) is read as JSON; any other type is 415.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

#: The longest JSON text of one float32 value with its separator, as clients write them (Python's
#: float repr of a float32, e.g. "-0.0039215688593685627, ", is at most 25 characters; most are 20-22).
JSON_BYTES_PER_VALUE = 24
#: Room beyond the tensor values: names, datatypes, shapes, labels, the JSON punctuation.
OVERHEAD = 1 << 20
#: Values in the largest row any served model takes: one 28x28 image.
ROW_VALUES = 28 * 28
#: gRPC's own ceiling for a message length (a signed 32-bit int).
GRPC_MAX = 2**31 - 1
#: Content types read as JSON: none given, or what `curl -d` sends when none is named.
JSON_BY_DEFAULT = (b"", b"application/x-www-form-urlencoded")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def default_max_body(max_batch: int) -> int:
    """Return the default cap: a JSON request of --max-batch images with room to spare (19.4 MiB at 1,024)."""
    return max_batch * ROW_VALUES * JSON_BYTES_PER_VALUE + OVERHEAD


def grpc_options(options: list[tuple[str, Any]], max_body: int) -> list[tuple[str, Any]]:
    """Return gRPC server options with the receive cap set to max_body (a larger message: RESOURCE_EXHAUSTED)."""
    capped = ("grpc.max_receive_message_length", "grpc.max_message_length")
    return [*(o for o in options if o[0] not in capped), ("grpc.max_receive_message_length", min(max_body, GRPC_MAX))]


class BodyLimit:
    """ASGI middleware: read a request's body up to `limit` bytes, answer 413 beyond it, inflate gzip within it."""

    def __init__(self, app: App, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if scope.get("method") == "POST" and not kind.endswith(b"json"):
            if kind not in JSON_BY_DEFAULT:
                await self._refuse(send, 415)
                return
            # Forgotten headers are common (curl -d): read the body as the JSON the protocol takes.
            rest = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*rest, (b"content-type", b"application/json")]}
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send, 413 if length.isdigit() else 400)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send, 413)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        del chunks
        if b"gzip" in headers.get(b"content-encoding", b"").lower():
            try:
                body = _gunzip(body, self.limit)
            except _TooLarge:
                await self._refuse(send, 413, " once decompressed")
                return
            except zlib.error:
                await self._refuse(send, 400)
                return
            # The body is plain now: MLServer must not decompress it again.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"content-encoding"]}
        await self.app(scope, replay(body, receive), send)

    async def _refuse(self, send: Send, status: int, how: str = "") -> None:
        if status == 413:
            error = f"the request body is larger{how} than the server takes: at most {self.limit:,} bytes (--max-body)"
        elif status == 415:
            error = "the request body must be JSON: send it with the header Content-Type: application/json"
        else:
            error = "the request body is malformed (a bad Content-Length, or gzip that does not decompress)"
        payload = json.dumps({"error": error}).encode()
        # Connection: close, so the rest of the body is never read.
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _TooLarge(Exception):
    pass


def _gunzip(body: bytes, limit: int) -> bytes:
    """Return a gzip body inflated, refusing one that would exceed limit bytes before inflating past it."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflate.decompress(body, limit + 1)
    if len(out) > limit or inflate.unconsumed_tail:
        raise _TooLarge
    out += inflate.flush()
    if len(out) > limit:
        raise _TooLarge
    if not inflate.eof:
        raise zlib.error("truncated gzip stream")
    return out


def replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive callable that gives the app the body read already, then passes on to the connection."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # later calls wait for the client to disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Return one line for what the request parser found wrong: the first place, and how many more."""
    if not errors:
        return "malformed request"
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        where = f"the JSON body, at character {loc[-1]}" if loc else "the JSON body"
    else:
        where = ".".join(str(part) for part in loc) or "the body"
    detail = str(first.get("msg", "invalid")).splitlines()[0]
    reason = (first.get("ctx") or {}).get("error")
    if reason:
        detail = f"{detail} ({str(reason).splitlines()[0]})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"malformed request: {where}: {detail}{more}"
