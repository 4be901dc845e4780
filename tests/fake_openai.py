"""A tiny OpenAI-compatible server on 127.0.0.1 (stdlib `http.server`) for judge tests.

It answers `GET /v1/models` and `POST /v1/chat/completions` with what a test's `reply` function
returns, records every request (path, headers, JSON body), and counts requests in flight.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]]


def completion(content: str, top: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A chat-completion body; `top` (token -> probability) becomes the first token's logprobs."""
    logprobs = None
    if top is not None:
        entries: list[dict[str, Any]] = [
            {"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in top.items()
        ]
        first = max(entries, key=lambda e: float(e["logprob"]))
        logprobs = {"content": [{**first, "top_logprobs": entries}]}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-judge",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def prompt_of(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


@dataclass
class FakeServer:
    reply: Reply
    models: list[str] = field(default_factory=lambda: ["fake-judge"])
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def fake_server(
    reply: Reply, *, models: list[str] | None = None, delay: float = 0.0
) -> Iterator[FakeServer]:
    """Serve on a free 127.0.0.1 port; yields the state (its `url` ends in /v1)."""
    state = FakeServer(reply, models or ["fake-judge"], delay)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: dict[str, Any], headers: Mapping[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                data = [{"id": m, "object": "model", "owned_by": "test"} for m in state.models]
                self._send(200, {"object": "list", "data": data}, {})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}}, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                headers = {k.lower(): v for k, v in self.headers.items()}
                state.requests.append({"path": self.path, "headers": headers, "body": body})
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                if state.delay:
                    time.sleep(state.delay)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                status, answer, headers = state.reply(body)
                self._send(status, answer, headers)
            finally:
                with state.lock:
                    state.in_flight -= 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
