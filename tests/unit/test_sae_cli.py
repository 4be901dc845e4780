"""`interp sae info|list|train` on the tiny model: output, one-line errors, a real training run."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

import interp.saes.load as load_module
from interp.cli.app import app
from interp.io import save_tensors
from interp.saes.load import load_sae
from tests.unit.test_saes_load import write_sae

runner = CliRunner()

TEXT = (
    "the model reads a sentence and writes the next word while every layer adds a little "
    "more to the residual stream so that later blocks can find the answer they need"
)


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and output.rstrip().endswith(errors[0]), output
    assert "Traceback" not in output
    return errors[0]


@pytest.fixture
def saved(tiny, tmp_path):
    path = write_sae(
        tmp_path / "block2-resid_post", model_name=tiny.name, fingerprint=tiny.fingerprint()
    )
    record = {
        "metrics": {
            "explained_variance": 0.8125,
            "l0": 4.0,
            "dead_fraction": 0.0625,
            "loss_increase": 0.25,
            "loss_recovered": 0.9375,
            "tokens": 1234,
        },
        "corpus": {"source": "/usr/share/doc/example"},
    }
    (path / "metrics.json").write_text(json.dumps(record))
    density = torch.zeros(32)
    density[:3] = torch.tensor([0.5, 0.01, 0.03])
    save_tensors(path / "density.safetensors", {"density": density}, {"tokens": 1234})
    return path


def test_info_shows_shape_hook_model_and_metrics(saved, tiny, tiny_dir):
    result = runner.invoke(app, ["sae", "info", str(saved)])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "topk",
        "d_sae",
        "blocks.2.hook_resid_post",
        tiny.fingerprint(),
        "explained variance",
        "0.8125",
        "L0 (active latents per token)",
        "dead fraction",
        "0.0625",
        "loss increase (nats)",
        "0.9375",
        "corpus.source",
        "never active 29, above 2% 2 of 32",
    ):
        assert text in out, (text, out)
    assert "fits --model" not in out
    checked = runner.invoke(app, ["sae", "info", str(saved), "--model", str(tiny_dir)])
    assert checked.exit_code == 0, checked.output
    assert "fits --model" in checked.output and "blocks.2.hook_out" in checked.output


def test_info_with_another_model_is_one_line(saved, tiny_base_dir):
    result = runner.invoke(app, ["sae", "info", str(saved), "--model", str(tiny_base_dir)])
    assert result.exit_code == 2
    assert "different weights" in _one_error_line(result.output)
    allowed = ["sae", "info", str(saved), "-m", str(tiny_base_dir), "--allow-other-model"]
    assert runner.invoke(app, allowed).exit_code == 0


def test_info_on_a_bad_path_is_one_line(tmp_path):
    missing = tmp_path / "no-such-sae"
    result = runner.invoke(app, ["sae", "info", str(missing)])
    assert result.exit_code != 0
    assert f"no SAE directory at {missing}" in _one_error_line(result.output)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cfg.json").write_text("{")
    (tmp_path / "bad" / "sae_weights.safetensors").write_bytes(b"junk")
    result = runner.invoke(app, ["sae", "info", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'bad' / 'cfg.json'} is not valid JSON" in _one_error_line(result.output)


def test_list_prints_shipped_names(tmp_path, monkeypatch):
    monkeypatch.setattr(load_module, "SHIPPED_ROOT", tmp_path)
    assert "no shipped SAEs" in runner.invoke(app, ["sae", "list"]).output
    write_sae(tmp_path / "tiny-model" / "block2-resid_post")
    result = runner.invoke(app, ["sae", "list"])
    assert result.exit_code == 0 and result.stdout.split() == ["tiny-model/block2-resid_post"]
    assert "no shipped SAEs for other" in runner.invoke(app, ["sae", "list", "-m", "other"]).output


def test_train_writes_a_loadable_sae_with_finite_metrics(tiny, tiny_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(0)
    for i in range(24):
        paragraphs = [
            " ".join(rng.choices(TEXT.split(), k=30)).capitalize() + "." for _ in range(2)
        ]
        (corpus / f"doc{i:02d}.txt").write_text("\n\n".join(paragraphs) + "\n")
    out = tmp_path / "saes"
    args = ["sae", "train", "-m", str(tiny_dir), "--layers", "1,3", "--out", str(out)]
    args += ["--corpus", str(corpus), "--d-sae", "32", "--k", "4", "--epochs", "1"]
    args += ["--batch-size", "64", "--max-tokens", "2000", "--eval-tokens", "400"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for layer in (1, 3):
        where = out / f"block{layer}-resid_post"
        for name in ("cfg.json", "sae_weights.safetensors", "metrics.json", "density.safetensors"):
            assert (where / name).is_file(), (where, name)
        record = json.loads((where / "metrics.json").read_text())
        metrics = record["metrics"]
        for key in ("explained_variance", "l0", "dead_fraction", "loss_increase", "loss_clean"):
            assert math.isfinite(metrics[key]), (key, metrics)
        assert 0 < metrics["l0"] <= 4 and record["train"]["d_sae"] == 32
        assert record["train"]["activations"] <= 2000
        with safe_open(str(where / "density.safetensors"), framework="pt") as handle:
            assert handle.get_tensor("density").shape == (32,)
        loaded = load_sae(where).check(tiny)
        assert (loaded.layer, loaded.site, loaded.d_sae, loaded.k) == (layer, "resid_post", 32, 4)
    assert "block 3: EV" in result.output


def test_train_with_a_missing_corpus_is_one_line(tiny_dir, tmp_path):
    args = ["sae", "train", "-m", str(tiny_dir), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--corpus", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert f"corpus directory {tmp_path / 'none'} does not exist" in _one_error_line(result.output)
