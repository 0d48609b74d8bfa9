"""A real HTTP server on 127.0.0.1, in a thread, that serves files and misbehaves on request.

It honours `Range: bytes=N-` (206 + Content-Range) and plays a queue of planned faults, one per request:
`"503"` answers 503, `("cut", n)` sends the full Content-Length but only n body bytes then closes the
connection, `"ignore-range"` answers 200 with the whole file whatever the Range. Every request is
recorded as (path, Range header or None).
"""

from __future__ import annotations

import re
import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """`with FakeServer({"/f.run": data}) as server:` … `server.url("/f.run")`, `server.requests`."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.faults: deque = deque()
        self.requests: list[tuple[str, str | None]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # a client that hangs up is no news
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                fault = server.faults.popleft() if server.faults else None
                data = server.files.get(self.path)
                if fault == "503":
                    return self._send(503, b"busy\n")
                if data is None:
                    return self._send(404, b"not found\n")
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and fault != "ignore-range":
                    start = int(match.group(1))
                    if start >= len(data):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                body = data[start:]
                headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
                if isinstance(fault, tuple) and fault[0] == "cut":
                    self.close_connection = True
                    return self._send(206 if start else 200, body, headers, cut=fault[1])
                return self._send(206 if start else 200, body, headers)

            def _send(self, status, body, headers=None, cut=None):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if cut is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


def closed_port_url(path: str) -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
