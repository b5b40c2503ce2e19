"""A tiny scripted HTTP server on 127.0.0.1 for tests (stdlib ``http.server`` in a thread).

Usage::

    with ScriptedServer() as srv:
        srv.route("/a.jpg", Reply(body=jpeg_bytes))
        srv.route("/flaky.jpg", Reply(status=500), Reply(body=jpeg_bytes))  # 500, then 200 forever
        url = srv.url("/a.jpg")
        ...
        assert srv.hits["/flaky.jpg"] == 2

Each route plays its replies in order and repeats the last one. Unknown paths get 404. A POST is
answered like a GET of its path; its body is kept in ``srv.posts``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    Attributes:
        status: HTTP status code.
        body: response body bytes.
        content_type: ``Content-Type`` header; None sends none.
        delay_s: seconds to sleep before sending the status line (simulates a slow server).
        send_length: send ``Content-Length``; False streams until the connection closes.
        headers: extra headers.
    """

    status: int = 200
    body: bytes = b""
    content_type: str | None = "image/jpeg"
    delay_s: float = 0.0
    send_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # noqa: D401 - quiet on client hang-ups
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class ScriptedServer:
    """HTTP server bound to 127.0.0.1 on a free port (or ``port``), serving scripted replies per path."""

    def __init__(self, port: int = 0) -> None:
        self._routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        #: ``(path, body)`` of every POST, in arrival order (its reply is the path's route, as for GET).
        self.posts: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format, *args):  # noqa: A002 - stdlib signature
                return

            def do_POST(self):  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.posts.append((self.path.split("?", 1)[0], body))
                self.do_GET()

            def do_GET(self):  # noqa: N802 - stdlib name
                path = self.path.split("?", 1)[0]
                with owner._lock:
                    n = owner.hits[path]
                    owner.hits[path] += 1
                    replies = owner._routes.get(path)
                if not replies:
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                reply = replies[min(n, len(replies) - 1)]
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self.send_response(reply.status)
                if reply.content_type is not None:
                    self.send_header("Content-Type", reply.content_type)
                if reply.send_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(reply.body)

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def route(self, path: str, *replies: Reply) -> str:
        """Register the replies for ``path``; returns its absolute URL."""
        if not replies:
            raise ValueError("route needs at least one Reply")
        with self._lock:
            self._routes[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
