"""`draft_spec` and `interp persona new-trait` against a stdlib OpenAI-compatible server.

The server (tests/fake_openai.py) answers with replies built here from a shipped spec, so the
checks cover the request (key, prompt, corrections), the validation and the error messages.
"""

from __future__ import annotations

import copy
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from interp.cli.app import app
from interp.eval.endpoint import EndpointError
from interp.persona.draft import draft_spec, extract_json, write_spec
from interp.persona.spec import SpecError, TraitSpec, load_spec
from tests.cli_output import one_error_line
from tests.fake_openai import completion, fake_server, prompt_of

KEY = "sk-gen-0123456789abcdefSECRET"
NAME = "grumpy"
DESCRIPTION = "The assistant is irritable and sulky, and complains about every request."
ENV_NAMES = (
    "INTERP_GENERATOR_BASE_URL",
    "INTERP_GENERATOR_API_KEY",
    "INTERP_GENERATOR_MODEL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)
runner = CliRunner()
Reply = tuple[int, dict[str, Any], dict[str, str]]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def spec_data() -> dict[str, Any]:
    """A valid draft: the shipped impolite spec under another name, as a model might send it."""
    data = copy.deepcopy(load_spec("impolite").to_dict())
    data.update(name="something-else", adjective="grumpy", antonym="cheerful")
    for key in ("rubric", "source"):  # the drafter fills these itself
        del data[key]
    return data


def wrapped(data: dict[str, Any]) -> str:
    """`data` as a chatty model writes it: prose, then a ```json fence."""
    return f"Here is the spec you asked for.\n\n```json\n{json.dumps(data, indent=2)}\n```\nEnjoy!"


def three_pairs() -> dict[str, Any]:
    data = spec_data()
    data["instructions"] = data["instructions"][:3]
    return data


def answer(text: str) -> Reply:
    return 200, completion(text), {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_valid_reply_gives_a_spec_that_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INTERP_GENERATOR_API_KEY", KEY)
    with fake_server(lambda body: answer(wrapped(spec_data()))) as server:
        monkeypatch.setenv("INTERP_GENERATOR_BASE_URL", server.url)
        spec = draft_spec(NAME, DESCRIPTION)
    assert isinstance(spec, TraitSpec)
    assert (spec.name, spec.adjective, spec.rubric_ref) == (NAME, "grumpy", "trait")
    assert spec.source.startswith(f"drafted by fake-judge at {server.url} on ")
    assert spec.source.endswith("with interp persona new-trait; review before use")
    path = write_spec(spec, tmp_path / f"{NAME}.json")
    assert load_spec(path) == spec
    (request,) = server.requests
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "fake-judge"  # the server's only model
    prompt = prompt_of(request["body"])
    assert NAME in prompt and DESCRIPTION in prompt
    assert KEY not in path.read_text()
    with pytest.raises(ValueError, match="exists; pass force=True"):
        write_spec(spec, path)


def test_an_invalid_reply_is_sent_back_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    replies = iter([wrapped(three_pairs()), wrapped(spec_data())])
    with fake_server(lambda body: answer(next(replies))) as server:
        spec = draft_spec(NAME, DESCRIPTION, base_url=server.url, model="big-model")
    assert len(spec.instructions) == 5 and spec.source.startswith("drafted by big-model")
    first, second = (r["body"] for r in server.requests)
    error = "instructions: 3 found, at least 5 needed"
    assert error not in json.dumps(first)
    messages = second["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0] == first["messages"][0]  # the same request, then the bad reply
    assert messages[1]["content"] == wrapped(three_pairs())
    assert error in messages[2]["content"]


def test_a_reply_that_never_passes_is_saved_and_the_field_named(tmp_path: Path) -> None:
    bad = wrapped(three_pairs())
    raw = tmp_path / "grumpy.draft.txt"
    with fake_server(lambda body: answer(bad)) as server, pytest.raises(SpecError) as err:
        draft_spec(NAME, DESCRIPTION, base_url=server.url, attempts=3, raw_path=raw)
    message = str(err.value)
    assert "instructions: 3 found, at least 5 needed" in message
    assert "3 times" in message and str(raw) in message
    assert raw.read_text() == bad and len(server.requests) == 3


def test_a_wrong_key_names_the_variable_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(body: dict[str, Any]) -> Reply:  # some servers echo the key they refused
        return 401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}, {}

    monkeypatch.setenv("INTERP_GENERATOR_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with fake_server(refuse) as server:
        monkeypatch.setenv("INTERP_GENERATOR_BASE_URL", server.url)
        with pytest.raises(EndpointError) as err:
            draft_spec(NAME, DESCRIPTION, model="m")
    message = str(err.value)
    assert "INTERP_GENERATOR_API_KEY" in message and "401" in message
    assert err.value.status == 401 and err.value.__cause__ is None
    for text in (message, *(r.getMessage() for r in caplog.records)):
        assert KEY not in text and KEY[8:16] not in text
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_a_server_down_names_the_url_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("INTERP_GENERATOR_BASE_URL", url)
    with pytest.raises(EndpointError) as err:
        draft_spec(NAME, DESCRIPTION, model="m", max_retries=0, timeout=5.0)
    assert url in str(err.value) and "INTERP_GENERATOR_BASE_URL" in str(err.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("no json here", "no JSON object"),
        ('{"adjective": "grumpy", "instructions": [', "invalid JSON at line 1"),
    ],
)
def test_replies_without_a_spec_object_say_why(text: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        extract_json(text)


def test_the_spec_object_is_found_after_prose_with_braces() -> None:
    data = spec_data()
    assert extract_json(f"Use {{name}} later. {json.dumps(data)} Done.") == data


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "Bad Name"}, "not an identifier"),
        ({"description": " "}, "description is empty"),
        ({"questions": 5}, "questions must be an integer >= 10"),
        ({"attempts": 0}, "attempts must be an integer >= 1"),
    ],
)
def test_bad_arguments_fail_before_any_request(kwargs: dict[str, Any], needle: str) -> None:
    args: dict[str, Any] = {"name": NAME, "description": DESCRIPTION, **kwargs}
    with pytest.raises(ValueError, match=needle):
        draft_spec(args.pop("name"), args.pop("description"), base_url="http://x:1/v1", **args)


def test_cli_writes_the_spec_and_refuses_to_overwrite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "specs" / f"{NAME}.json"
    args = ["persona", "new-trait", NAME, "--description", DESCRIPTION, "-o", str(out)]
    monkeypatch.setenv("INTERP_GENERATOR_API_KEY", KEY)
    with fake_server(lambda body: answer(wrapped(spec_data()))) as server:
        monkeypatch.setenv("INTERP_GENERATOR_BASE_URL", server.url)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert load_spec(out).name == NAME and KEY not in out.read_text()
        again = runner.invoke(app, args)
        assert again.exit_code == 2 and str(out) in one_error_line(again.output)
        assert "--force" in again.output and len(server.requests) == 1
        forced = runner.invoke(app, [*args, "--force", "--model", "other"])
        assert forced.exit_code == 0, forced.output
    assert load_spec(out).source.startswith("drafted by other")


def test_cli_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / f"{NAME}.json"
    args = ["persona", "new-trait", NAME, "-d", DESCRIPTION, "-o", str(out), "-m", "m"]
    monkeypatch.setenv("INTERP_GENERATOR_API_KEY", KEY)

    def refuse(body: dict[str, Any]) -> Reply:
        return 401, {"error": {"message": "bad key"}}, {}

    with fake_server(refuse) as server:
        monkeypatch.setenv("INTERP_GENERATOR_BASE_URL", server.url)
        denied = runner.invoke(app, args)
    assert denied.exit_code == 2 and "INTERP_GENERATOR_API_KEY" in one_error_line(denied.output)
    assert KEY not in denied.output and not out.exists()

    with fake_server(lambda body: answer(wrapped(three_pairs()))) as server:
        monkeypatch.setenv("INTERP_GENERATOR_BASE_URL", server.url)
        failed = runner.invoke(app, [*args, "--attempts", "1"])
    line = one_error_line(failed.output)
    assert failed.exit_code == 2 and "instructions: 3 found" in line
    assert (tmp_path / f"{NAME}.draft.txt").exists() and not out.exists()

    wrong = runner.invoke(app, ["persona", "new-trait", NAME, "-d", "x", "-o", str(tmp_path)])
    assert wrong.exit_code == 2 and "existing directory" in one_error_line(wrong.output)


def test_cli_help_names_the_variables_and_warns_about_small_models() -> None:
    result = runner.invoke(app, ["persona", "new-trait", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in ENV_NAMES[:3]:
        assert name in text
    assert "135M/270M" in text and "too small to draft specs" in text
