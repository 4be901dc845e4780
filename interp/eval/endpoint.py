"""One OpenAI-compatible chat-completions server: where it is, its key, and clear errors.

Shared by the API judge (`interp.eval.judges.api`) and the trait-spec drafter
(`interp.persona.draft`). Each user names its own environment variables (`EnvNames`); the
server's URL, key and model come from the arguments, then those variables, then the `OPENAI_*`
fallbacks.

The key is sent to the server and nowhere else: `_Secret` never shows it, and every error
`Endpoint.call` raises is scrubbed of it (`EndpointError`, without the client's exception as its
cause). Errors name the variable to fix, never its value.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

FALLBACK_BASE_URL = "OPENAI_BASE_URL"
FALLBACK_API_KEY = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "no-key"  # sent when no key is set: local servers without --api_key accept anything
BUSY_HINT = "try again later, or raise max_retries="

T = TypeVar("T")


class EndpointError(RuntimeError):
    """The server could not be used (down, wrong key, wrong URL or model, overloaded).

    `status` is the HTTP status the server answered, or None (no answer, or not HTTP).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EnvNames:
    """The environment variables one user of an endpoint reads (names only, never values)."""

    base_url: str
    api_key: str
    model: str
    fallback_base_url: str = FALLBACK_BASE_URL
    fallback_api_key: str = FALLBACK_API_KEY


class _Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with the key (and any 8+ character piece of it) replaced by ***."""
        key = self._value
        if not key or key == NO_KEY:
            return text
        text = text.replace(key, "***")
        if len(key) >= 16:  # a server may echo part of a key: drop any 8-character piece too
            for start in range(len(key) - 7):
                text = text.replace(key[start : start + 8], "***")
        return text

    def __repr__(self) -> str:
        return "_Secret(***)"

    __str__ = __repr__


def _env(name: str, fallback: str | None = None) -> str | None:
    """The stripped value of `name`, else of `fallback`; None when both are unset or blank."""
    value = os.environ.get(name, "").strip()
    if not value and fallback:
        value = os.environ.get(fallback, "").strip()
    return value or None


def public_url(url: str) -> str:
    """`url` without user info, query or fragment: safe to show and to store."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def check_settings(max_retries: int, timeout: float) -> None:
    """A ValueError naming the value when `max_retries` or `timeout` is unusable."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, not {max_retries!r}")
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


class Endpoint:
    """An `openai.OpenAI` client for one server, whose errors become scrubbed `EndpointError`s.

    Args:
        base_url: the server's URL (ending in `/v1` for most servers); default
            `$<env.base_url>`, then `$<env.fallback_base_url>`, then OpenAI's.
        env: the variables this user reads.
        what: what the server is for, in messages ("judge" gives "the judge server at ...").
        max_retries: retries of 408/409/429/5xx answers and timeouts, with backoff.
        timeout: seconds per request.
        error: the `EndpointError` subclass raised (e.g. `ApiJudgeError` for the judge).
        busy_hint: the advice after a 429/5xx that outlasted the retries.

    The key comes from `$<env.api_key>`, then `$<env.fallback_api_key>` (none: a local server).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        env: EnvNames,
        what: str = "API",
        max_retries: int = 4,
        timeout: float = 60.0,
        error: type[EndpointError] = EndpointError,
        busy_hint: str = BUSY_HINT,
    ) -> None:
        check_settings(max_retries, timeout)
        url = base_url or _env(env.base_url, env.fallback_base_url) or DEFAULT_BASE_URL
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{what} base URL {public_url(url)!r} is not an http(s) URL; pass base_url= or "
                f"set {env.base_url}, e.g. http://127.0.0.1:8000/v1"
            )
        self.env = env
        self.what = what
        self.base_url = url.rstrip("/")
        self.endpoint = public_url(self.base_url)
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.error = error
        self.busy_hint = busy_hint
        self._key = _Secret(_env(env.api_key, env.fallback_api_key) or NO_KEY)

        import openai

        self.client = openai.OpenAI(
            api_key=self._key.reveal(),
            base_url=self.base_url,
            max_retries=max_retries,
            timeout=self.timeout,
        )

    def __repr__(self) -> str:
        return f"Endpoint({self.what!r}, base_url={self.endpoint!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def scrub(self, text: str) -> str:
        """`text` without the key or any 8-character piece of it."""
        return self._key.scrub(text)

    @property
    def has_key(self) -> bool:
        """Whether a key was set (else the placeholder `NO_KEY` is sent)."""
        return self._key.reveal() != NO_KEY

    def env_model(self) -> str | None:
        """The model named by `$<env.model>`, or None."""
        return _env(self.env.model)

    def served_model(self) -> str:
        """The server's only model (`GET /models`); an error when it serves none or several."""
        names = [m.id for m in self.call(lambda: list(self.client.models.list()))]
        if len(names) != 1:
            raise self.error(
                f"no {self.what} model given and the server at {self.endpoint} serves "
                f"{len(names)} models ({', '.join(names[:10]) or 'none'}); pass model= or set "
                f"{self.env.model}"
            )
        return str(names[0])

    def call(self, request: Callable[[], T], *, model: str | None = None) -> T:
        """Run one request; turn the client's errors into `self.error`s without the key.

        `model` (the name asked for, if known) is shown when the server answers 404.
        """
        import openai

        try:
            return request()
        except openai.OpenAIError as err:
            failure = self._failure(err, model)
        # raised outside the `except`: the client's exception (whose message or request may hold
        # the key) is not kept as __context__ for a debugger or error reporter to find
        raise failure

    def _failure(self, err: Exception, model: str | None) -> EndpointError:
        """The one-line error for a client exception, naming the variable to fix, never the key."""
        import openai

        env, scrub, error = self.env, self.scrub, self.error
        where = f"the {self.what} server at {self.endpoint}"
        if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            given = "it refused the key" if self.has_key else "no key was set"
            return error(
                f"{where} answered HTTP {err.status_code} ({given}); set {env.api_key} (or "
                f"{env.fallback_api_key}) to a key it accepts",
                status=err.status_code,
            )
        if isinstance(err, openai.APITimeoutError):
            return error(
                f"{where} did not answer within {self.timeout:g} s ({self.max_retries} retries); "
                "check the server, or pass a larger timeout="
            )
        if isinstance(err, openai.APIConnectionError):
            cause = scrub(str(err.__cause__ or err))[:200]
            return error(
                f"cannot reach {where} ({cause}); start the server, or set {env.base_url} (or "
                f"{env.fallback_base_url}) to its URL"
            )
        if isinstance(err, openai.NotFoundError):
            return error(
                f"{where} answered HTTP 404 ({scrub(err.message)[:200]}): no such endpoint or "
                f"model; check {env.base_url} (usually ends in /v1) and the model "
                f"({env.model}, now {model!r})",
                status=404,
            )
        if isinstance(err, openai.BadRequestError):
            return error(f"{where} answered HTTP 400: {scrub(err.message)[:200]}", status=400)
        if isinstance(err, openai.APIStatusError):
            return error(
                f"{where} answered HTTP {err.status_code} after {self.max_retries} retries "
                f"({scrub(err.message)[:200]}); {self.busy_hint}",
                status=err.status_code,
            )
        return error(f"{where}: {scrub(str(err))[:300]}")
