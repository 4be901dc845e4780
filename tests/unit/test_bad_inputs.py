"""Bad inputs a new user tried: each is refused with the wrong value and the fix, or read whole.

- a GGUF control vector for a deeper model (direction.40 for a 4-block model) is refused at
  import, with the model's block range, instead of being written and refused later by steer;
- scale resid_norm on one-token prompts names the scale and the fix, not an internal reduction;
- a sweep over an empty coefficient list names the empty list;
- a CLI range error repeats the value given;
- a run store whose last complete record lacks its newline is read whole.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import interp
from interp.cli.app import app
from interp.runs.store import RunStore, load_frame, read_records
from interp.runs.sweeps import grid, run_sweep
from interp.steering.interventions import measure_resid_norm
from interp.vectors import DirectionSet, VectorMismatch
from tests.cli_output import one_error_line

runner = CliRunner()


def _foreign_gguf(path: Path, blocks: list[int], d_model: int) -> Path:
    """A control vector as llama.cpp / repeng write it: direction.N tensors and a model hint."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", len(blocks))
    for block in blocks:
        writer.add_tensor(f"direction.{block}", np.ones(d_model, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_for_a_deeper_model_is_refused_at_import(tiny, tiny_dir, tmp_path):
    deep = tiny.n_layers + 10
    path = _foreign_gguf(tmp_path / "deep.gguf", [1, deep], tiny.d_model)
    with pytest.raises(VectorMismatch) as err:
        DirectionSet.from_gguf(path, tiny)
    message = str(err.value)
    assert f"block(s) {deep}" in message and f"0-{tiny.n_layers - 1}" in message
    assert str(path) in message
    target = tmp_path / "deep.safetensors"
    result = runner.invoke(app, ["vectors", "convert", str(path), str(target), "-m", str(tiny_dir)])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert f"block(s) {deep}" in line and f"{tiny.n_layers} blocks" in line
    assert not target.exists()
    # a negative block index says blocks count from 0
    negative = _foreign_gguf(tmp_path / "negative.gguf", [1], tiny.d_model)
    with pytest.raises(VectorMismatch, match=r"block\(s\) -1: block indices count from 0"):
        one = DirectionSet.from_tensor(torch.ones(1, tiny.d_model), tiny, [1], method="test")
        replace(one, layers=(-1,)).check(tiny)
    assert DirectionSet.from_gguf(negative, tiny).layers == (1,)
    # in range, the same file imports
    ok = DirectionSet.from_gguf(_foreign_gguf(tmp_path / "ok.gguf", [1, 2], tiny.d_model), tiny)
    assert ok.layers == (1, 2)


def test_resid_norm_on_one_token_prompts_names_the_scale_and_the_fix(tiny):
    ds = DirectionSet.from_tensor(
        torch.ones(tiny.n_layers, tiny.d_model),
        tiny,
        list(range(tiny.n_layers)),
        method="test",
    )
    one_token = tiny.tokenizer.convert_ids_to_tokens([100])[0].replace("Ġ", " ").strip()
    assert len(tiny.tokenizer(one_token, add_special_tokens=False)["input_ids"]) == 1
    with pytest.raises(ValueError) as err:
        measure_resid_norm(tiny, [one_token], ds)
    message = str(err.value)
    assert "--scale resid_norm" in message and "one token" in message
    assert "--scale raw|unit" in message and repr(one_token) in message
    assert "reduction" not in message
    # a one-token prompt among longer ones adds nothing, and the others are measured
    both = measure_resid_norm(tiny, [one_token, "Tell me about the ocean"], ds)
    alone = measure_resid_norm(tiny, ["Tell me about the ocean"], ds)
    assert both.stats["resid_norm"].tolist() == alone.stats["resid_norm"].tolist()


def test_an_empty_coefficient_list_is_named(tiny, tmp_path):
    ds = DirectionSet.from_tensor(torch.ones(1, tiny.d_model), tiny, [1], method="test")
    with pytest.raises(ValueError, match=r"grid: coefs is empty \(\[\]\).*coefs=\[0, 4, 8\]"):
        grid(["Hi there"], ds, [1], [])
    with pytest.raises(ValueError, match=r"grid: layers is empty"):
        grid(["Hi there"], ds, [], [1.0])
    with pytest.raises(ValueError, match=r"grid: samples must be an integer >= 1, got 0"):
        grid(["Hi there"], ds, [1], [1.0], samples=0)
    with pytest.raises(ValueError, match=r"the sweep has no cells \(cells=\[\]\).*grid\("):
        run_sweep(tiny, [], tmp_path / "runs.jsonl")
    assert not (tmp_path / "runs.jsonl").exists()


def test_a_cli_range_error_repeats_the_value(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    result = runner.invoke(
        app, ["capture", str(data), "-o", str(tmp_path / "a.safetensors"), "--batch-size", "0"]
    )
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())  # the panel wraps lines
    assert "'--batch-size'" in text and "greater than or equal to 1, got 0" in text
    # a value that is not a number at all is repeated too
    result = runner.invoke(
        app, ["capture", str(data), "-o", str(tmp_path / "a.safetensors"), "--batch-size", "x"]
    )
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "valid integer" in text and "got x" in text


def test_a_complete_last_record_without_its_newline_is_read(tmp_path):
    path = tmp_path / "runs.jsonl"
    store = RunStore(path)
    for i in range(24):
        store.append({"i": i}, {"value": i * 2})
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # as an editor or another tool leaves it
    assert len(read_records(path)) == 24
    frame = load_frame(path)
    assert len(frame) == 24 and frame["value"].tolist() == [2 * i for i in range(24)]
    # a writer keeps that record (ends it with its newline) and appends after it
    again = RunStore(path)
    assert again.done(store.records()[-1]["key"]) and again.todo([{"i": 23}]) == []
    again.append({"i": 24}, {"value": 48})
    assert [r["config"]["i"] for r in read_records(path)] == list(range(25))
    assert path.read_bytes().count(b"\n") == 25


def test_an_unfinished_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "runs.jsonl"
    store = RunStore(path)
    for i in range(3):
        store.append({"i": i}, {"value": i})
    with path.open("ab") as handle:
        handle.write(b'{"key": "abc", "config": {"i": 3}, "val')  # a writer killed mid-line
    with pytest.warns(UserWarning, match=r"runs\.jsonl:4: skipped an unfinished last line"):
        frame = load_frame(path)
    assert len(frame) == 3
    # the next writer cuts the partial line and appends whole records
    RunStore(path).append({"i": 3}, {"value": 3})
    assert [r["config"]["i"] for r in read_records(path)] == [0, 1, 2, 3]


def test_the_embedded_steer_cli_refuses_a_one_token_resid_norm(tiny_dir, tmp_path):
    model = interp.load_model(str(tiny_dir), device="cpu")
    ds = DirectionSet.from_tensor(
        torch.ones(model.n_layers, model.d_model),
        model,
        list(range(model.n_layers)),
        method="test",
    )
    vector = ds.save(tmp_path / "v.safetensors")
    prompts = tmp_path / "prompts.jsonl"
    one_token = model.tokenizer.convert_ids_to_tokens([100])[0].replace("Ġ", " ").strip()
    prompts.write_text(json.dumps({"prompt": one_token}) + "\n")
    result = runner.invoke(
        app,
        [
            "steer", str(prompts), "-v", str(vector), "-o", str(tmp_path / "out"),
            "-m", str(tiny_dir), "--layers", "1", "--scale", "resid_norm",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert "--scale resid_norm" in line and "one token" in line
