"""The CLI turns errors a user can fix into one line, unless INTERP_DEBUG asks for tracebacks."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from interp.cli.app import app
from tests.cli_output import one_error_line

runner = CliRunner()


def _capture_args(tiny_dir, tmp_path, *extra: str) -> list[str]:
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": "Tell me about the ocean"}) + "\n")
    out = tmp_path / "acts.safetensors"
    return ["capture", str(data), "-o", str(out), "-m", str(tiny_dir), *extra]


def _one_error_line(output: str) -> str:
    """The single error line, last (after any progress bars), with no traceback."""
    line = one_error_line(output)
    assert output.rstrip().endswith(line), output
    return line


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("bogus", "unknown device 'bogus'; use 'cpu', 'cuda'"),
        ("cuda" if not torch.cuda.is_available() else "cuda:99", "device 'cuda"),
    ],
)
def test_bad_device_is_one_line(tiny_dir, tmp_path, device, expected):
    result = runner.invoke(app, _capture_args(tiny_dir, tmp_path, "--device", device))
    assert result.exit_code == 2, result.exception
    assert expected in _one_error_line(result.output)


def test_interp_debug_reraises_with_the_traceback(tiny_dir, tmp_path):
    args = _capture_args(tiny_dir, tmp_path, "--layers", "7")
    quiet = runner.invoke(app, args)
    assert quiet.exit_code == 2
    assert "layer 7 is out of range" in _one_error_line(quiet.output)
    loud = runner.invoke(app, args, env={"INTERP_DEBUG": "1"})
    assert isinstance(loud.exception, ValueError) and "layer 7 is out of range" in str(
        loud.exception
    )
    assert loud.exc_info is not None and loud.exc_info[2].tb_next is not None  # a real traceback
    off = runner.invoke(app, args, env={"INTERP_DEBUG": "0"})
    assert off.exit_code == 2


def test_help_documents_interp_debug():
    result = runner.invoke(app, ["--help"])
    assert "INTERP_DEBUG=1" in result.output


def _steer_args(tiny_dir, tmp_path, *extra: str) -> list[str]:
    from interp import load_model
    from interp.vectors import DirectionSet

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Tell me about the ocean"}) + "\n")
    g = torch.Generator().manual_seed(0)
    lm = load_model(str(tiny_dir), device="cpu")
    vector = DirectionSet.from_tensor(torch.randn(4, 64, generator=g), lm)
    path = vector.save(tmp_path / "v.safetensors")
    out = tmp_path / "out"
    args = ["steer", str(prompts), "-v", str(path), "-o", str(out), "-m", str(tiny_dir)]
    return [*args, "--layers", "1", "--max-new-tokens", "3", "--metric", "length", *extra]


def test_a_coefficient_past_the_dtype_bound_is_one_line_and_stores_nothing(tiny_dir, tmp_path):
    """`--coef 1e30 --scale unit` used to store empty texts from uniform logits, with rc 0."""
    args = _steer_args(tiny_dir, tmp_path, "--coef", "0", "--coef", "1e30", "--scale", "unit")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert "writes |coef| x ||vector|| = 1e+30, over the" in line
    assert "give a smaller coef: |coef| <= 2.31e+18 for this vector (norm 1 " in line
    assert not (tmp_path / "out" / "generations.jsonl").exists()


def test_an_overflowing_edit_is_one_line_not_a_traceback(tiny_dir, tmp_path, monkeypatch):
    """FloatingPointError (an edit that overflowed, see `engine.apply_op`) is an error the user
    fixes with a smaller coefficient: one line and exit 2, like a ValueError."""
    import interp.runs.sweeps as sweeps

    said = "the add intervention at resid_post layer 1 with coefficient 4 made prompt 0 inf"

    def overflowing(*args, **kwargs):
        raise FloatingPointError(said)

    monkeypatch.setattr(sweeps, "generate", overflowing)
    result = runner.invoke(app, _steer_args(tiny_dir, tmp_path, "--coef", "4"))
    assert result.exit_code == 2, result.exception
    assert _one_error_line(result.output) == f"error: {said}"
