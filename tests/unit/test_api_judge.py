"""The API judge against a stdlib OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py).

Expected scores are worked out by hand from the probabilities the server sends. The judge on
a real server (llama.cpp with SmolLM2) is tested in tests/integration/test_api_judge.py.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest

from interp.eval.judges import api
from interp.eval.judges.api import ApiJudge, ApiJudgeError, parse_reply
from interp.eval.judges.base import JudgeItem
from interp.eval.judges.rubrics import Rubric
from tests.fake_openai import completion, fake_server, prompt_of

RUBRIC = Rubric(
    "test", "Rate the answer from 0 to {scale_max}.\nQuestion: {question}\nAnswer: {answer}"
)
KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "INTERP_JUDGE_BASE_URL",
        "INTERP_JUDGE_API_KEY",
        "INTERP_JUDGE_MODEL",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(api, "_PROBED", {})  # ports are reused between tests


def item(answer: str) -> JudgeItem:
    return JudgeItem("How are you?", answer)


# Multi-digit tokens (GPT-4-like): answers "80 with 0.6 (two spellings), 90 with 0.3".
MULTI_TOP = {"80": 0.5, " 80": 0.1, "90": 0.3, "Hello": 0.1}
MULTI_EXPECTED = (80 * 0.6 + 90 * 0.3) / 0.9  # 83.33 on 0-100
# Digit tokens (SmolLM2-like), asked on 0-9: 7 with 0.6, 8 with 0.3.
SINGLE_TOP = {"7": 0.6, "8": 0.3, "x": 0.1}
SINGLE_EXPECTED = (7 * 0.6 + 8 * 0.3) / 0.9 * 100 / 9  # 81.48 on 0-100


def scripted(kind: str) -> Any:
    """A server whose judge writes numbers as `kind` tokens ("multi" or "single")."""

    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        prompt = prompt_of(body)
        if prompt.startswith("Write the number"):
            number = prompt.split()[3]
            first = number if kind == "multi" else number[0]
            return 200, completion(first, {first: 0.9, "The": 0.1}), {}
        if "REFUSE" in prompt:
            return 200, completion("REF", {"REF": 0.9, "5": 0.05, "I": 0.05}), {}
        if "CHATTER" in prompt:
            return 200, completion("Hello", {"Hello": 0.9, "5": 0.1}), {}
        top = MULTI_TOP if kind == "multi" else SINGLE_TOP
        return 200, completion(max(top, key=top.__getitem__), top), {}

    return reply


def test_multi_digit_server_uses_the_0_100_scale() -> None:
    with fake_server(scripted("multi")) as server:
        judge = ApiJudge("fake-judge", base_url=server.url)
        scores = judge.score([item("fine"), item("REFUSE"), item("CHATTER")], RUBRIC)
        identity = judge.identity(RUBRIC)
    assert judge.splits_numbers() is False
    assert identity.method == "logprob-0-100" and identity.settings["scale_max"] == 100
    assert scores[0].value == pytest.approx(MULTI_EXPECTED)
    assert scores[0].mass == pytest.approx(0.9)
    assert (scores[1].value, scores[1].no_score) == (None, "refusal")
    assert (scores[2].value, scores[2].no_score) == (None, "low_mass")
    graded = [r["body"] for r in server.requests if "Rate the answer" in prompt_of(r["body"])]
    assert len(graded) == 3 and all("from 0 to 100." in prompt_of(b) for b in graded)
    # the logprob method of papers.md §1.3, as sent on the wire
    for body in graded:
        assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["seed"] == 0
        assert body["logprobs"] is True and body["top_logprobs"] == 20
    probes = [r for r in server.requests if prompt_of(r["body"]).startswith("Write the number")]
    assert len(probes) == len(api.PROBE_NUMBERS)


def test_digit_splitting_server_uses_the_0_9_scale() -> None:
    """Not 0-10: "10" is two digit tokens, and one token would read a confident 10 as 1."""
    with fake_server(scripted("single")) as server:
        judge = ApiJudge(base_url=server.url)  # model: the server's only one
        scores = judge.score([item("fine"), item("also fine")], RUBRIC)
        identity = judge.identity(RUBRIC)
    assert judge.model == "fake-judge"
    assert judge.splits_numbers() is True
    assert identity.method == "logprob-0-9" and identity.settings["scale_max"] == 9
    assert [s.value for s in scores] == pytest.approx([SINGLE_EXPECTED] * 2)
    graded = [r["body"] for r in server.requests if "Rate the answer" in prompt_of(r["body"])]
    assert graded and all("from 0 to 9." in prompt_of(b) for b in graded)


def test_probe_runs_once_per_server_and_model() -> None:
    with fake_server(scripted("single")) as server:
        for _ in range(3):
            ApiJudge("fake-judge", base_url=server.url).score([item("x")], RUBRIC)
        probes = [r for r in server.requests if prompt_of(r["body"]).startswith("Write")]
    assert len(probes) == len(api.PROBE_NUMBERS)


def test_explicit_number_tokens_skip_the_probe() -> None:
    with fake_server(scripted("single")) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="single")
        assert judge.score([item("x")], RUBRIC)[0].value == pytest.approx(SINGLE_EXPECTED)
        assert not [r for r in server.requests if prompt_of(r["body"]).startswith("Write")]


def test_an_unclear_probe_asks_for_number_tokens() -> None:
    def words(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        return 200, completion("Sure", {"Sure": 0.9, "OK": 0.1}), {}

    with fake_server(words) as server, pytest.raises(ApiJudgeError, match="number_tokens="):
        ApiJudge("fake-judge", base_url=server.url).score([item("x")], RUBRIC)


def test_a_429_is_retried_then_scored() -> None:
    calls = {"n": 0}

    def flaky(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        calls["n"] += 1
        if calls["n"] == 1:
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}
        return 200, completion("7", SINGLE_TOP), {}

    with fake_server(flaky) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="single")
        [score] = judge.score([item("x")], RUBRIC)
    assert calls["n"] == 2
    assert score.value == pytest.approx(SINGLE_EXPECTED)


def test_a_timeout_is_retried_then_scored() -> None:
    """The first request outlives the client's timeout; the retry is answered at once."""
    calls = {"n": 0}

    def slow_once(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(3.0)
        return 200, completion("7", SINGLE_TOP), {}

    with fake_server(slow_once) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="single", timeout=1.0)
        [score] = judge.score([item("x")], RUBRIC)
    assert calls["n"] == 2
    assert score.value == pytest.approx(SINGLE_EXPECTED)


def test_min_mass_takes_an_int_and_refuses_a_bool() -> None:
    assert ApiJudge("m", base_url="http://127.0.0.1:9/v1", min_mass=0).min_mass == 0.0
    with pytest.raises(ValueError, match="min_mass must be a probability"):
        ApiJudge("m", base_url="http://127.0.0.1:9/v1", min_mass=True)


def test_a_persistent_5xx_fails_after_the_retries() -> None:
    def broken(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        return 503, {"error": {"message": "overloaded"}}, {"Retry-After": "0"}

    with fake_server(broken) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="multi", max_retries=2)
        with pytest.raises(ApiJudgeError, match="HTTP 503 after 2 retries"):
            judge.score([item("x")], RUBRIC)
        assert len(server.requests) == 3  # first try + 2 retries


def test_a_bad_request_is_that_items_error_only() -> None:
    def picky(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if "TOO LONG" in prompt_of(body):
            return 400, {"error": {"message": "prompt exceeds the context"}}, {}
        return 200, completion("80", MULTI_TOP), {}

    with fake_server(picky) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="multi")
        scores = judge.score([item("TOO LONG"), item("fine")], RUBRIC)
    assert scores[0].value is None and scores[0].no_score == "error"
    assert "exceeds the context" in scores[0].raw
    assert scores[1].value == pytest.approx(MULTI_EXPECTED)


def test_concurrency_bounds_requests_in_flight() -> None:
    for concurrency in (1, 4):
        with fake_server(scripted("multi"), delay=0.15) as server:
            judge = ApiJudge(
                "fake-judge", base_url=server.url, number_tokens="multi", concurrency=concurrency
            )
            scores = judge.score([item(f"answer {i}") for i in range(12)], RUBRIC)
        assert server.max_in_flight == concurrency
        assert [s.value for s in scores] == pytest.approx([MULTI_EXPECTED] * 12)


def test_scores_come_back_in_item_order() -> None:
    def by_answer(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        digit = prompt_of(body).rsplit("Answer: ", 1)[1].strip()
        return 200, completion(digit, {digit: 1.0}), {}

    with fake_server(by_answer, delay=0.01) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="single")
        scores = judge.score([item(str(i % 10)) for i in range(20)], RUBRIC)
    assert [s.value for s in scores] == pytest.approx([(i % 10) * 100 / 9 for i in range(20)])


def test_text_mode_parses_the_reply() -> None:
    replies = {"a": "Score: 85 out of 100", "b": "REFUSAL", "c": "I cannot rate this", "d": "150"}

    def talk(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        assert "logprobs" not in body or not body["logprobs"]
        return 200, completion(replies[prompt_of(body)[-1]]), {}

    with fake_server(talk) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, mode="text")
        scores = judge.score([item(k) for k in "abcd"], RUBRIC)
        assert judge.identity(RUBRIC).method == "text"
    assert scores[0].value == pytest.approx(85.0)
    assert [s.no_score for s in scores[1:]] == ["refusal", "unparsed", "unparsed"]


def test_parse_reply_on_other_scales() -> None:
    assert parse_reply("7", 10).value == pytest.approx(70.0)
    assert parse_reply(" 2.5/10", 10).value == pytest.approx(25.0)
    assert parse_reply("-3", 10).no_score == "unparsed"
    assert parse_reply("refusal: no", 100).no_score == "refusal"


def test_no_logprobs_from_the_server_says_use_text_mode() -> None:
    def plain(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        return 200, completion("80"), {}

    with fake_server(plain) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="multi")
        with pytest.raises(ApiJudgeError, match="mode='text'"):
            judge.score([item("x")], RUBRIC)


def test_environment_gives_url_model_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_server(scripted("multi"), models=["a", "b"]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the fallback loses
        monkeypatch.setenv("INTERP_JUDGE_BASE_URL", server.url)
        monkeypatch.setenv("INTERP_JUDGE_MODEL", "judge-from-env")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        judge = ApiJudge(number_tokens="multi")
        judge.score([item("x")], RUBRIC)
    request = server.requests[-1]
    assert request["body"]["model"] == "judge-from-env"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert judge.endpoint == server.url


def test_two_models_and_none_chosen_names_the_variable() -> None:
    with fake_server(scripted("multi"), models=["a", "b"]) as server:
        judge = ApiJudge(base_url=server.url, number_tokens="multi")
        with pytest.raises(ApiJudgeError, match="INTERP_JUDGE_MODEL"):
            judge.score([item("x")], RUBRIC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_down_names_the_url_and_the_variable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    judge = ApiJudge("m", base_url=url, number_tokens="multi", max_retries=0, timeout=5.0)
    with pytest.raises(ApiJudgeError) as err:
        judge.score([item("x")], RUBRIC)
    assert url in str(err.value) and "INTERP_JUDGE_BASE_URL" in str(err.value)


def test_a_wrong_key_names_the_variable_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    def guarded(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        # the kind of body some servers send: it echoes the key it refused
        return 401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}, {}

    monkeypatch.setenv("INTERP_JUDGE_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with fake_server(guarded) as server:
        judge = ApiJudge("fake-judge", base_url=server.url, number_tokens="multi")
        with pytest.raises(ApiJudgeError) as err:
            judge.score([item("x")], RUBRIC)
        identity = judge.identity(RUBRIC)
    message = str(err.value)
    assert "INTERP_JUDGE_API_KEY" in message and "401" in message
    # nothing chained: the client's exception (which may hold the key) is not reachable
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert any(r.name.startswith("openai") for r in caplog.records)  # the client did log
    saved = tmp_path / "identity.json"
    saved.write_text(json.dumps(identity.to_dict()))
    logged = [r.getMessage() for r in caplog.records]
    for text in (message, repr(judge), saved.read_text(), *logged):
        assert KEY not in text and KEY[8:16] not in text
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"  # it was sent


def test_scrub_removes_the_key_and_its_pieces() -> None:
    secret = api._Secret(KEY)
    assert repr(secret) == "_Secret(***)" and KEY not in str(secret)
    text = f"bad key {KEY} (…{KEY[-10:]})"
    assert KEY[-10:-2] not in secret.scrub(text) and KEY not in secret.scrub(text)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"concurrency": 0}, "concurrency must be"),
        ({"max_retries": -1}, "max_retries must be"),
        ({"timeout": 0.0}, "timeout must be"),
        ({"timeout": float("nan")}, "timeout must be"),
        ({"base_url": "127.0.0.1:8000"}, "INTERP_JUDGE_BASE_URL"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ApiJudge("m", **kwargs)


def test_public_url_drops_credentials() -> None:
    assert api.public_url("https://user:pw@host:8443/v1/?token=abc#x") == "https://host:8443/v1"
