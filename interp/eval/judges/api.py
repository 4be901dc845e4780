"""The API judge: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, SGLang, hosted).

Where it connects, which model it asks and with which key come from the arguments or the
environment:

- `INTERP_JUDGE_BASE_URL` (fallback `OPENAI_BASE_URL`): the server's URL, e.g.
  `http://127.0.0.1:8000/v1`; default OpenAI's.
- `INTERP_JUDGE_API_KEY` (fallback `OPENAI_API_KEY`): the key; a local server without a key
  needs none.
- `INTERP_JUDGE_MODEL`: the model name; without it, the server's only model (`GET /models`).

The key is sent to the server and nowhere else: it never appears in the judge's repr, its
identity (the results store), log lines or the text of an error (`ApiJudgeError` scrubs it).

Methods (`mode`):

- `"logprob"` (default; papers.md §1.3): one chat completion per item with `max_tokens=1,
  temperature=0, logprobs=True, top_logprobs=20, seed=0`; the score is the expected value over
  the number tokens among the top 20 (`logprob.expected_score`), "no score" (`low_mass`) when
  they hold less than 0.25 of the probability, and `refusal` when the reply starts "REFUSAL".
- `"text"`, for servers without logprobs: a short greedy reply; the first number in it, on
  0..`rubric.scale_max`, mapped to 0-100; "REFUSAL" gives `refusal`, anything else `unparsed`.

Number tokens. With one token the judge can only write one token's worth of number. GPT-4's and
Llama 3's tokenizers have tokens for 0..999, so a 0-100 rubric works ("logprob-0-100"); many
others split numbers into digits (SmolLM2, Gemma, Qwen), where a 0-100 rubric read from one
token silently sees only 0-9. `number_tokens="auto"` finds out which kind the served model is:
from `tokenizer` when one is given (`logprob.splits_numbers`), else by a one-time probe per
(server, model) that asks for a two-digit number with `max_tokens=1` and looks at the returned
tokens (a multi-digit token proves multi-digit numbers; only single digits mean it splits). A
digit-splitting judge is asked on a 0-9 scale (`rubric.render(item, scale_max=9)`) and the
score is mapped to 0-100 ("logprob-0-9"); not 0-10, because "10" is two tokens there and its
first token would read as 1. The identity names the method used.

The identity (what results are stored under) holds the model name, the method, the rubric's
digest, the decoding settings and the endpoint without credentials (`scheme://host:port/path`):
scores from two servers never mix, even when both call their model by the same name.

Requests run `concurrency` at a time in a thread pool; the `openai` client retries 408, 409,
429, 5xx and timeouts `max_retries` times with exponential backoff (honouring `Retry-After`).
The connection, the key and the error messages are `interp.eval.endpoint.Endpoint`'s.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from interp.eval.endpoint import (
    DEFAULT_BASE_URL,
    FALLBACK_API_KEY,
    FALLBACK_BASE_URL,
    NO_KEY,
    Endpoint,
    EndpointError,
    EnvNames,
    _env,
    _Secret,
    check_settings,
    public_url,
)
from interp.eval.judges.base import MIN_NUMBER_MASS, JudgeIdentity, JudgeItem, Method, Score
from interp.eval.judges.logprob import expected_score, one_token_reading, splits_numbers
from interp.eval.judges.rubrics import Rubric, resolve

ENV_BASE_URL = "INTERP_JUDGE_BASE_URL"
ENV_API_KEY = "INTERP_JUDGE_API_KEY"
ENV_MODEL = "INTERP_JUDGE_MODEL"
ENV = EnvNames(ENV_BASE_URL, ENV_API_KEY, ENV_MODEL, FALLBACK_BASE_URL, FALLBACK_API_KEY)
BUSY_HINT = "try again later, lower concurrency=, or raise max_retries="

TOP_LOGPROBS = 20
TEXT_MAX_TOKENS = 16
SEED = 0
REFUSAL = "REFUSAL"
PROBE_NUMBERS = ("57", "83")  # asked for with max_tokens=1 to see how the model writes numbers

Mode = Literal["logprob", "text"]
NumberTokens = Literal["auto", "multi", "single"]

# (endpoint, model) -> whether the served model splits numbers into digits
_PROBED: dict[tuple[str, str], bool] = {}
_PROBE_LOCK = threading.Lock()


class ApiJudgeError(EndpointError):
    """The judge server could not be used (down, wrong key, wrong URL or model, overloaded)."""


__all__ = [
    "DEFAULT_BASE_URL",
    "ENV",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "FALLBACK_API_KEY",
    "FALLBACK_BASE_URL",
    "NO_KEY",
    "ApiJudge",
    "ApiJudgeError",
    "_Secret",
    "_env",
    "parse_reply",
    "public_url",
]


def parse_reply(text: str, scale_max: int) -> Score:
    """The score in a generated reply: its first number on 0..`scale_max`, mapped to 0-100."""
    reply = text.strip()
    raw = reply[:200]
    if reply.upper().startswith(REFUSAL):
        return Score(None, "refusal", raw=raw)
    found = re.search(r"-?\d+(?:\.\d+)?", reply)
    if found is None:
        return Score(None, "unparsed", raw=raw)
    value = float(found.group())
    if not 0.0 <= value <= scale_max:
        return Score(None, "unparsed", raw=raw)
    return Score(value * 100.0 / scale_max, None, raw=raw)


def _is_refusal_token(token: str) -> bool:
    """A first token that can only begin "REFUSAL" (upper case, two letters or more)."""
    text = token.strip()
    return len(text) >= 2 and text.isupper() and REFUSAL.startswith(text)


def _top_logprobs(entry: Any) -> dict[str, float]:
    """token -> logprob for one position; tokens with the same text add their probabilities."""
    pairs = [(t.token, t.logprob) for t in (entry.top_logprobs or [])]
    if not pairs:
        pairs = [(entry.token, entry.logprob)]
    merged: dict[str, float] = {}
    for token, logprob in pairs:
        if logprob is None or not math.isfinite(logprob):
            continue
        if token in merged:
            high, low = max(merged[token], logprob), min(merged[token], logprob)
            merged[token] = high + math.log1p(math.exp(low - high))
        else:
            merged[token] = float(logprob)
    return merged


class ApiJudge:
    """A judge on an OpenAI-compatible chat-completions server.

    Args:
        model: the model name on the server; default `$INTERP_JUDGE_MODEL`, else the server's
            only model.
        base_url: the server's URL (ending in `/v1` for most servers); default
            `$INTERP_JUDGE_BASE_URL`, then `$OPENAI_BASE_URL`, then OpenAI's.
        mode: "logprob" (expected value over the top-20 number tokens) or "text" (parse a reply).
        number_tokens: "auto" (probe the server, or use `tokenizer`), "multi" (numbers up to 100
            are one token: GPT-4, Llama 3) or "single" (digits: SmolLM2, Gemma, Qwen; the rubric
            is then asked on 0-9).
        concurrency: requests in flight at once.
        max_retries: retries of 408/409/429/5xx answers and timeouts, with backoff.
        timeout: seconds per request.
        tokenizer: optional tokenizer of the served model, to decide `number_tokens="auto"`
            without a probe.
        min_mass: no score below this probability on number tokens (0.25 in the paper).

    The key comes from `$INTERP_JUDGE_API_KEY`, then `$OPENAI_API_KEY` (none: a local server).
    """

    backend = "api"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        mode: Mode = "logprob",
        number_tokens: NumberTokens = "auto",
        concurrency: int = 4,
        max_retries: int = 4,
        timeout: float = 60.0,
        tokenizer: Any = None,
        min_mass: float | int = MIN_NUMBER_MASS,
    ) -> None:
        if mode not in ("logprob", "text"):
            raise ValueError(f"mode must be 'logprob' or 'text', not {mode!r}")
        if number_tokens not in ("auto", "multi", "single"):
            raise ValueError(
                f"number_tokens must be 'auto', 'multi' or 'single', not {number_tokens!r}"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, not {concurrency!r}")
        check_settings(max_retries, timeout)
        if isinstance(min_mass, bool) or not (
            isinstance(min_mass, (int, float)) and 0.0 <= min_mass <= 1.0
        ):
            raise ValueError(f"min_mass must be a probability in [0, 1], not {min_mass!r}")
        min_mass = float(min_mass)
        self._endpoint = Endpoint(
            base_url,
            env=ENV,
            what="judge",
            max_retries=max_retries,
            timeout=timeout,
            error=ApiJudgeError,
            busy_hint=BUSY_HINT,
        )
        self.endpoint = self._endpoint.endpoint
        self.mode: Mode = mode
        self.number_tokens: NumberTokens = number_tokens
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self._tokenizer = tokenizer
        self.min_mass = min_mass
        self._model = model or self._endpoint.env_model()
        self._model_lock = threading.Lock()
        self._client = self._endpoint.client

    def __repr__(self) -> str:
        return (
            f"ApiJudge(model={self._model!r}, base_url={self.endpoint!r}, mode={self.mode!r}, "
            f"number_tokens={self.number_tokens!r}, concurrency={self.concurrency})"
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- what is asked ---------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The model name: as given, `$INTERP_JUDGE_MODEL`, or the server's only model."""
        with self._model_lock:
            if self._model is None:
                self._model = self._served_model()
            return self._model

    def _served_model(self) -> str:
        return self._endpoint.served_model()

    def splits_numbers(self) -> bool:
        """Whether the served model writes numbers digit by digit (decides the 0-9 scale)."""
        if self.number_tokens != "auto":
            return self.number_tokens == "single"
        if self._tokenizer is not None:
            return splits_numbers(self._tokenizer)
        key = (self.endpoint, self.model)
        with _PROBE_LOCK:
            if key not in _PROBED:
                _PROBED[key] = self._probe()
            return _PROBED[key]

    def _probe(self) -> bool:
        seen: list[str] = []
        for number in PROBE_NUMBERS:
            reply = self._complete(
                f"Write the number {number} and nothing else.", logprobs=True, max_tokens=1
            )
            content = reply.choices[0].logprobs.content
            seen += list(_top_logprobs(content[0]))
        digits = [t.strip() for t in seen if t.strip().isdigit() and t.strip().isascii()]
        if any(len(d) >= 2 for d in digits):
            return False
        if digits:
            return True
        raise ApiJudgeError(
            f"could not tell how {self.model!r} at {self.endpoint} writes numbers: asked for "
            f"{' and '.join(PROBE_NUMBERS)}, its top tokens were {seen[:10]}; pass "
            "number_tokens='multi' (numbers are one token: GPT-4, Llama 3) or 'single' (digits: "
            "Qwen, Gemma, SmolLM2)"
        )

    def scale_and_method(self, rubric: Rubric) -> tuple[int, Method]:
        """The scale the rubric is asked on and the method name for the identity."""
        if self.mode == "text":
            return rubric.scale_max, "text"
        return one_token_reading(rubric.scale_max, self.splits_numbers())

    def identity(self, rubric: Rubric | str | Path) -> JudgeIdentity:
        """Backend, model, method and rubric digest, plus the decoding settings and endpoint."""
        rubric = resolve(rubric)
        scale, method = self.scale_and_method(rubric)
        settings: dict[str, Any] = {
            "endpoint": self.endpoint,
            "scale_max": scale,
            "temperature": 0,
            "seed": SEED,
        }
        if self.mode == "logprob":
            settings.update(max_tokens=1, top_logprobs=TOP_LOGPROBS, min_mass=self.min_mass)
        else:
            settings.update(max_tokens=TEXT_MAX_TOKENS)
        return JudgeIdentity("api", self.model, method, rubric.digest(), settings)

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, items: Sequence[JudgeItem], rubric: Rubric | str | Path) -> list[Score]:
        """One Score per item, in order; `concurrency` requests in flight at once."""
        rubric = resolve(rubric)
        items = list(items)
        if not items:
            return []
        scale, _ = self.scale_and_method(rubric)
        prompts = [rubric.render(item, scale_max=scale) for item in items]  # slot errors first
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="api-judge")
        try:
            futures: list[Future[Score]] = [
                pool.submit(self._score_one, prompt, scale) for prompt in prompts
            ]
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # a fatal error stops the rest
            raise
        finally:
            pool.shutdown(wait=True)

    def _score_one(self, prompt: str, scale: int) -> Score:
        try:
            if self.mode == "text":
                reply = self._complete(prompt, logprobs=False, max_tokens=TEXT_MAX_TOKENS)
                return parse_reply(reply.choices[0].message.content or "", scale)
            reply = self._complete(prompt, logprobs=True, max_tokens=1)
        except ApiJudgeError as err:
            if err.status != 400:
                raise
            return Score(None, "error", raw=str(err)[:200])  # this item only (e.g. too long)
        logprobs = reply.choices[0].logprobs
        if logprobs is None or not logprobs.content:
            raise ApiJudgeError(
                f"the judge server at {self.endpoint} returned no logprobs for {self.model!r}; "
                "use ApiJudge(mode='text') with servers that do not give them"
            )
        floor = max(self.min_mass, 1e-12)  # no number token at all is never a score
        score = expected_score(_top_logprobs(logprobs.content[0]), scale, floor)
        if score.value is None and _is_refusal_token(score.raw):
            return Score(None, "refusal", score.mass, score.raw)
        return score

    def _complete(self, prompt: str, *, logprobs: bool, max_tokens: int) -> Any:
        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": TOP_LOGPROBS} if logprobs else {}
        model = self.model
        return self._call(
            lambda: self._client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0,
                seed=SEED,
                **extra,
            )
        )

    def _call(self, request: Any) -> Any:
        """Run one request; the client's errors become `ApiJudgeError`s without the key."""
        return self._endpoint.call(request, model=self._model)
