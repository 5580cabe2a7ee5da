"""Request handlers for the real HTTP servers the hook tests start on 127.0.0.1."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler


class Quiet:
    def log_message(self, *args):
        pass


def answering(status: int, body: bytes | str, content_type: str = "application/json",
              delay: threading.Event | None = None) -> type[BaseHTTPRequestHandler]:
    """A handler that answers every GET and HEAD with ``status`` and ``body``, after ``delay`` is set
    (or at once)."""

    class Handler(Quiet, BaseHTTPRequestHandler):
        def do_HEAD(self):
            self._answer(with_body=False)

        def do_GET(self):
            self._answer(with_body=True)

        def _answer(self, with_body):
            if delay is not None:
                delay.wait(10)
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)

    return Handler


def files(directory) -> type[BaseHTTPRequestHandler]:
    """A handler serving ``directory`` as the artifact repository's nginx does (GET and HEAD)."""

    class Handler(Quiet, SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

    return Handler
