"""ASGI middleware of the API server: a Gantry DAG's trigger refused for a param answers with
``gantry.param_errors.explain``'s sentence instead of jsonschema's text (REST and UI alike)."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from gantry.param_errors import explain

_TRIGGER_PATH = re.compile(r"^/api/v2/dags/gantry_[^/]+/dagRuns/?$")


class ParamRefusalMiddleware:
    """Rewrites the 400 of ``POST /api/v2/dags/gantry_*/dagRuns``; every other request passes
    through untouched (its body is not even buffered).

    :param app: the ASGI app it wraps.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _TRIGGER_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                if message["status"] != 400:
                    start["pass"] = True
                    await send(message)
                    return
                start.update(message)
                return
            if start.get("pass"):
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            await send_rewritten()

        async def send_rewritten() -> None:
            out = bytes(body)
            try:
                payload = json.loads(out)
                sentence = explain(payload.get("detail", "")) if isinstance(payload.get("detail"), str) else None
                if sentence:
                    out = json.dumps({"detail": sentence}).encode()
            except ValueError:
                pass
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, capture)
