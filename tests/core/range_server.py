"""A static file server with HTTP range requests, run as its own process by the tests' fixture
(a server thread in the test process would wait for the GIL while GDAL reads).

    python range_server.py FOLDER LOG [DELAY]

Prints the port it listens on (127.0.0.1), appends "METHOD PATH BYTES" per request to LOG, and
answers paths under /slow/ (the same files) only after DELAY seconds."""

from __future__ import annotations

import sys
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=a-b` support and logs every request."""

    log_path: Path
    delay: float = 0.0

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _record(self, size: int) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{self.command} {self.path} {size}\n")

    def _answer(self, body: bool) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(self.delay)
        target = Path(self.translate_path(self.path.replace("/slow/", "/", 1)))
        if not target.is_file():
            self._record(0)
            self.send_error(404, "Not Found")
            return
        size = target.stat().st_size
        start, end = 0, size
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged[6:].split(",")[0].partition("-")
            if first:
                start, end = int(first), min(int(last) + 1 if last else size, size)
            else:  # a suffix range: the last N bytes
                start = max(0, size - int(last))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self._record(end - start if body else 0)
        if body:
            with open(target, "rb") as data:
                data.seek(start)
                self.wfile.write(data.read(end - start))


def main(folder: str, log: str, delay: str = "0") -> None:
    """Serve `folder` until killed."""
    handler = type("Handler", (RangeHandler,), {"log_path": Path(log), "delay": float(delay)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=folder))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
