"""llama.cpp for tests, always in a child process: a native crash fails one test, not the run.

- `llama_server(gguf)` starts `python -m llama_cpp.server --model <gguf> --host 127.0.0.1
  --port <free port>` as a subprocess, waits until `GET /v1/models` answers, yields the
  server's `/v1` URL, and stops the process at the end (terminate, then kill). Its output goes
  to a log file, shown in the error if it fails to start; `server_died(url)` says how a server
  that stopped answering ended (the signal and its last lines), and `RestartingServer` starts a
  new one for the next test after a crash.
- `run_child(request)` runs one in-process llama.cpp job (`tests.llamacpp_child`) in a child
  and raises `LlamaChildError` with the exit signal and the child's last lines if it dies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

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


# the last lines of a dead child's output that an error shows
TAIL_LINES = 30
# servers started by llama_server: url -> (process, log file), for server_died
_SERVERS: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}


class LlamaChildError(RuntimeError):
    """A llama.cpp child process died or failed; the message names the signal or exit code."""


def describe_exit(returncode: int) -> str:
    """'killed by SIGSEGV (signal 11)' for a negative return code, else 'exit code N'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} (signal {-returncode})"
    return f"exit code {returncode}"


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_child(request: dict[str, Any], scratch: Path, *, timeout: float = 600.0) -> Path:
    """Run one llama.cpp job (see tests.llamacpp_child) in a child; returns its output folder.

    A child that dies (a signal) or fails (a non-zero exit) raises LlamaChildError with how it
    ended and its last lines of output, so the test that asked fails and the run goes on.
    """
    out = scratch / "llama-child"
    out.mkdir(parents=True, exist_ok=True)
    request_path = out / "request.json"
    request_path.write_text(json.dumps(request))
    command = [sys.executable, "-m", "tests.llamacpp_child", str(request_path), str(out)]
    root = Path(__file__).resolve().parent.parent
    paths = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    what = f"llama.cpp child ({request['job']} on {Path(request['gguf']).name})"
    try:
        done = subprocess.run(
            command,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",  # a crashing child may print anything
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        output = "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part or ""
            for part in (err.stdout, err.stderr)
        )
        raise LlamaChildError(
            f"{what} ran past {timeout:.0f} s and was killed; its last lines of output:\n"
            f"{tail(output)}"
        ) from None
    if done.returncode != 0:
        raise LlamaChildError(
            f"{what} {describe_exit(done.returncode)}; its last lines of output:\n"
            f"{tail(done.stdout + done.stderr)}"
        )
    return out


def server_died(url: str, wait: float = 0.5) -> str | None:
    """How the llama_server at `url` ended, if it is no longer running; None while it runs.

    Waits up to `wait` seconds for a process that is still going down (a crash seen by a
    client can reach the parent a moment later)."""
    process, log = _SERVERS[url]
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        return None
    return (
        f"the llama.cpp server at {url} {describe_exit(process.returncode)}; its last lines "
        f"of output:\n{tail(log.read_text(errors='replace'))}"
    )


class RestartingServer:
    """A llama_server for a module of tests, started again if it died.

    `url()` gives the running server's URL, starting a new one when the last one died (a native
    crash), so a crash fails the test it happened in and the next test gets a fresh server;
    `died()` says how the current one ended (see server_died)."""

    def __init__(self, gguf: Path, **options: Any) -> None:
        self.gguf, self.options = gguf, options
        self._stack = ExitStack()
        self._url: str | None = None

    def url(self) -> str:
        key = self.options.get("api_key")
        if self._url is None or self.died(wait=0.0) is not None or not _ready(self._url, key):
            self.close()
            self._url = self._stack.enter_context(llama_server(self.gguf, **self.options))
        return self._url

    def died(self, wait: float = 0.5) -> str | None:
        return None if self._url is None else server_died(self._url, wait)

    def close(self) -> None:
        self._stack.close()
        self._stack, self._url = ExitStack(), None


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
            _SERVERS[url] = (process, log_path)
            try:
                yield from _serve(process, url, api_key, log_path, startup_timeout)
            finally:
                _SERVERS.pop(url, None)
                _stop(process)


def _serve(
    process: subprocess.Popen[bytes], url: str, api_key: str | None, log: Path, timeout: float
) -> Iterator[str]:
    deadline = time.monotonic() + timeout
    while not _ready(url, api_key):
        if process.poll() is not None or time.monotonic() > deadline:
            code = process.poll()
            how = "timed out" if code is None else describe_exit(code)
            raise RuntimeError(
                f"llama.cpp server did not start on {url} ({how}); its last lines of output:\n"
                f"{tail(log.read_text(errors='replace'))}"
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
