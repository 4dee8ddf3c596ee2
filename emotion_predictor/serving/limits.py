"""How large a request the service takes: body bytes, histories per batch, turns, characters.

The limits come from the service's config (`ServeArguments`). `RequestBodyLimit` is ASGI
middleware that answers 413 to a body over `max_request_bytes` before anything parses it (by its
Content-Length, or while reading a chunked body), so a huge body costs neither memory nor JSON
parsing; `check_request_size` checks a validated request's histories against the other limits
and raises `LimitExceeded` (413) naming the history, turn and limit.
"""

from __future__ import annotations

import json
from typing import Any

from emotion_predictor.arguments import ServeArguments
from emotion_predictor.errors import UserError


class LimitExceeded(UserError):
    """A request over one of the service's limits (HTTP 413)."""


def check_request_size(histories: list[list[str]], settings: ServeArguments, batch: bool) -> None:
    """LimitExceeded for the first history (of a batch request when `batch`) over a limit."""
    if batch and len(histories) > settings.max_batch_histories:
        raise LimitExceeded(
            f"histories holds {len(histories)} histories; this service takes at most {settings.max_batch_histories} "
            "per request (max_batch_histories): split them over several requests"
        )
    for index, history in enumerate(histories):
        where = f"histories[{index}]" if batch else "history"
        if len(history) > settings.max_history_turns:
            raise LimitExceeded(
                f"{where} has {len(history)} turns; this service takes at most {settings.max_history_turns} "
                "(max_history_turns): send the most recent turns only"
            )
        for turn, text in enumerate(history):
            if len(text) > settings.max_utterance_chars:
                raise LimitExceeded(
                    f"{where}[{turn}] has {len(text):,} characters; this service takes at most "
                    f"{settings.max_utterance_chars:,} per utterance (max_utterance_chars)"
                )


class RequestBodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 and one error line, unparsed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send, f"{int(declared):,} bytes")
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its whole body
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self.reject(send, f"more than {self.max_bytes:,} bytes")
                return
        # The app reads the body again from this replay, then waits on the client (a disconnect).
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def reject(self, send: Any, size: str) -> None:
        message = f"the request body is {size}; this service takes at most {self.max_bytes:,} bytes (max_request_bytes)"
        payload = json.dumps({"error": message}).encode("utf-8")
        # The rest of the body is never read, so the connection cannot carry another request.
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
