"""A Hugging Face hub on 127.0.0.1 (stdlib `http.server`) serving files a test writes.

It answers what `huggingface_hub` asks when it resolves a file, `HEAD` and `GET`
`/{repo}/resolve/{revision}/{path}`, with the headers the real hub sends (`X-Repo-Commit`,
`ETag`, `Content-Length`), honours `Range: bytes=a-b` with 206 (SAELens reads safetensors
headers that way), and answers a missing file with 404 and `X-Error-Code: EntryNotFound` (a
missing repo with `RepositoryNotFound`). Every request is recorded (method, path, Range).

Point a process at it by patching `huggingface_hub.constants.ENDPOINT` and
`HUGGINGFACE_CO_URL_TEMPLATE` (both read from `HF_ENDPOINT` at import time): `FakeHub.patch`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class FakeHub:
    files: dict[str, dict[str, bytes]]  # repo id -> path in repo -> content
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Send this process's `huggingface_hub` calls here (online, no token)."""
        import huggingface_hub.constants as hub

        monkeypatch.setattr(hub, "ENDPOINT", self.url)
        monkeypatch.setattr(
            hub,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            self.url + "/{repo_id}/resolve/{revision}/{filename}",
        )
        monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.delenv("HF_TOKEN", raising=False)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = unquote(self.path.split("?", 1)[0])
            hub.requests.append(
                {"method": self.command, "path": path, "range": self.headers.get("Range")}
            )
            match = _RESOLVE.match(path)
            if match is None or match["repo"] not in hub.files:
                self._error(404, "RepositoryNotFound", body)
                return
            data = hub.files[match["repo"]].get(match["path"])
            if data is None:
                self._error(404, "EntryNotFound", body)
                return
            status, chunk = 200, data
            wanted = _RANGE.match(self.headers.get("Range", ""))
            if wanted:
                start = int(wanted[1])
                end = int(wanted[2]) if wanted[2] else len(data) - 1
                status, chunk = 206, data[start : end + 1]
            self.send_response(status)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Content-Type", "application/octet-stream")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if body:
                self.wfile.write(chunk)

        def _error(self, status: int, code: str, body: bool) -> None:
            message = f"{code}: {self.path}".encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            if body:
                self.wfile.write(message)

    return Handler


@contextmanager
def fake_hub(files: dict[str, dict[str, bytes]]) -> Iterator[FakeHub]:
    hub = FakeHub(files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
