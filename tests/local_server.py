"""A local HTTP server on 127.0.0.1 for download tests: serves a folder, optionally with bad bytes first."""

from __future__ import annotations

import contextlib
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Raw(bytes):
    """A tampered body written to the socket as it is (status line and headers included), then the connection
    closes: a garbage status line, a body shorter than its Content-Length, a huge announced size."""


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, tampered: dict[str, list[bytes]], **kwargs):
        self.tampered = tampered
        super().__init__(*args, **kwargs)

    def do_GET(self):
        queue = self.tampered.get(self.path.lstrip("/"))
        if queue:  # serve the next tampered body instead of the file, once
            body = queue.pop(0)
            if isinstance(body, Raw):
                self.wfile.write(body)
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def serve(folder: Path, tampered: dict[str, list[bytes]] | None = None):
    """Serve ``folder`` at ``http://127.0.0.1:<free port>``; ``tampered[name]`` is a list of bodies served
    for ``name`` before the real file (each once; a :class:`Raw` body is written without a status line or headers of
its own). Yields the base URL."""
    handler = functools.partial(_Handler, directory=str(folder), tampered=tampered if tampered is not None else {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
