"""A real llama.cpp server (llama-cpp-python's `llama_cpp.server`) on 127.0.0.1, for tests.

`llama_server(gguf)` starts `python -m llama_cpp.server --model <gguf> --host 127.0.0.1 --port
<free port>` as a subprocess, waits until `GET /v1/models` answers, yields the server's `/v1`
URL, and stops the process at the end (terminate, then kill). Its output goes to a log file,
shown in the error if it fails to start.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
# CI sets INTERP_REQUIRE_LLAMA_CPP=1 (.ci/run): there a missing server package fails the tests
# that need it instead of skipping them quietly.
REQUIRED = os.environ.get("INTERP_REQUIRE_LLAMA_CPP") == "1"
if REQUIRED and not HAVE_LLAMA_CPP:
    raise RuntimeError(
        "INTERP_REQUIRE_LLAMA_CPP=1 but llama-cpp-python is not installed; make test installs "
        "it with the dev extra (pip install -e '.[dev]')"
    )
needs_llama_cpp = pytest.mark.skipif(
    not HAVE_LLAMA_CPP,
    reason="llama-cpp-python is not installed (make test installs it with the dev extra: "
    "pip install -e '.[dev]')",
)
MODEL_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str, api_key: str | None) -> bool:
    request = urllib.request.Request(f"{url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextmanager
def llama_server(
    gguf: Path,
    *,
    api_key: str | None = None,
    n_ctx: int = 2048,
    n_threads: int = 2,
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Serve `gguf` on a free 127.0.0.1 port; yields the base URL (ending in /v1)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--seed",
        "0",
        "--verbose",
        "false",
    ]
    # the server reads any unset setting from its environment: leave none of ours there
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("API_KEY", "CONFIG_FILE")}
    if api_key:
        env["API_KEY"] = api_key  # the server's setting, read from its environment (not argv)
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="llama-server-") as scratch:
        log_path = Path(scratch) / "server.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                yield from _serve(process, url, api_key, log_path, startup_timeout)
            finally:
                _stop(process)


def _serve(
    process: subprocess.Popen[bytes], url: str, api_key: str | None, log: Path, timeout: float
) -> Iterator[str]:
    deadline = time.monotonic() + timeout
    while not _ready(url, api_key):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"llama.cpp server did not start on {url} (exit code {process.poll()}):\n{tail}"
            )
        time.sleep(0.25)
    yield url


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
