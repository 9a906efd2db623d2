"""Answer REST inference requests through MLServer's data plane without FastAPI's per-request machinery.

MLServer's REST infer endpoint is a FastAPI route: routing, dependency solving, validation of the
request and of the response, and serialization cost as much of the event loop's time as the model
call for a one-digit request (docs/serve.md, "Many small requests"). `FastInfer` runs just inside
the body limit (and then wraps its answers in MLServer's gzip middleware itself), or innermost,
inside CORS and the HTTP metrics, where those are on, so that they still see every request. It
answers `POST /v2/models/{name}[/versions/{version}]/infer` itself, doing what the route does,
in the same order and with MLServer's own functions:

- the body is parsed with orjson, as MLServer's `Request.json` does, and validated as an
  `InferenceRequest`; a body that fails either goes on to FastAPI unchanged, so every malformed
  request gets the answer it got before;
- the request's headers go into its parameters (`insert_headers`), the data plane runs it
  (model lookup, readiness, request id, metrics, the inference middlewares, the response cache);
- the response's headers come out of its parameters into the HTTP headers (`extract_headers`),
  after Content-Length and Content-Type, and its body is the response model dumped as FastAPI
  dumps it (JSON mode, by alias, without unset or None fields) and encoded by MLServer's
  `Response`;
- an `MLServerError` is answered as MLServer's exception handler answers it; anything else
  propagates to the server-error middleware, a 500, as before.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from mlserver.errors import MLServerError
from mlserver.rest.responses import Response
from mlserver.types import InferenceRequest
from mlserver.utils import extract_headers, insert_headers
from pydantic import ValidationError
from starlette.middleware.gzip import GZipMiddleware

from .limits import App, Message, Receive, Scope, Send, replay

#: The two infer routes of the v2 protocol.
INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


class FastInfer:
    """ASGI middleware: answer v2 infer requests through the data plane; pass everything else on."""

    def __init__(self, app: App, plane: Any, gzip: bool = False) -> None:
        self.app = app
        self.plane = plane
        #: Whether to compress answers as MLServer's GZipMiddleware does: when this runs outside it.
        self.gzip = gzip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        if disconnected:
            return
        payload = _parsed(body)
        if payload is None:
            # FastAPI answers it as it always did (400 with one line, see limits.validation_message).
            await self.app(scope, replay(body, receive), send)
            return
        response = await self._infer(scope, payload, route["name"], route["version"])
        if self.gzip:
            # As MLServer adds it (starlette's defaults): it compresses, or only adds Vary, as it would.
            response = GZipMiddleware(response)
        await response(scope, receive, send)

    async def _infer(self, scope: Scope, payload: Any, name: str, version: str | None) -> Any:
        insert_headers(payload, _headers(scope))
        try:
            result = await self.plane.infer(payload, name, version)
        except MLServerError as exc:
            # As mlserver.rest.errors.handle_mlserver_error answers it.
            return Response(status_code=exc.status_code, content={"error": str(exc)})
        extra = extract_headers(result)
        response = Response(
            content=result.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
        )
        if extra:
            response.headers.update(extra)
        return response


def _parsed(body: bytes) -> Any:
    """Return the body as an InferenceRequest, or None where it is not valid JSON or not a valid request."""
    try:
        return InferenceRequest.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        return None


def _headers(scope: Scope) -> dict[str, str]:
    """Return the request's headers as Starlette's `dict(request.headers)` does: lower-case names, the first of each."""
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """Return the request's body, and whether the client went away before sending all of it."""
    chunks: list[bytes] = []
    more = True
    while more:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks), False
