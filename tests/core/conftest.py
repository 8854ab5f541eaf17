"""A static file server on 127.0.0.1 with HTTP range requests, for the remote-source tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("range_server.py")


class ServedFolder:
    """A folder served over HTTP: `url` is its address, `requests()` what was asked so far."""

    def __init__(self, folder: Path, log: Path, delay: float) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(folder), str(log), str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, bytes sent) of every request so far."""
        if not self.log.is_file():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [(m, p, int(n)) for m, p, n in (line.split(" ") for line in lines)]

    def stop(self) -> None:
        """End the server process."""
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture
def http_folder(tmp_path_factory):
    """Serve a folder on 127.0.0.1 (optionally `delay` seconds late under /slow/)."""
    served = []

    def serve(folder: Path, delay: float = 0.0) -> ServedFolder:
        log = tmp_path_factory.mktemp("http") / "requests.log"
        served.append(ServedFolder(folder, log, delay))
        return served[-1]

    yield serve
    for server in served:
        server.stop()
