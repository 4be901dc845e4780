import json

import pytest
from typer.testing import CliRunner

from interp.capture import Activations
from interp.cli.app import app
from interp.figures.plots import residual_norms
from interp.figures.style import chromium_path, save_figure

runner = CliRunner()


def test_cli_capture_then_figure_from_the_saved_file(tiny_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Tell me about the ocean"},
                {"role": "assistant", "content": "It is deep."},
            ]
        },
        {"prompt": "Why did the chicken cross the road?", "response": " To get to the other side."},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "acts.safetensors"
    args = [
        "capture",
        str(data),
        "-o",
        str(out),
        "-m",
        str(tiny_dir),
        "--layers",
        "1-3",
        "--reduce",
        "first_norm=first:norm",
        "--reduce",
        "prompt_norm=prompt&!first:norm",
        "--reduce",
        "response_norm=response:norm",
        "--site",
        "resid_post",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    acts = Activations.load(out)
    assert acts.layers == [1, 2, 3] and acts["response_norm"].shape == (2, 3)

    fig = residual_norms(out)
    assert [t.name for t in fig.data] == [
        "first token (attention sink)",
        "prompt tokens (first excluded)",
        "response tokens",
    ]
    assert list(fig.data[2].y) == pytest.approx(acts["response_norm"].mean(0).tolist())
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and fig.layout.title.text
    formats = ("html", "png") if chromium_path() else ("html",)
    written = save_figure(fig, tmp_path / "figs", "norms", formats=formats)
    assert [p.suffix for p in written] == [f".{f}" for f in formats]
    assert all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(ValueError, match="would leave the output directory"):
        save_figure(fig, tmp_path / "figs", "../escape")


def test_cli_errors_are_one_line_with_exit_code_2(tiny_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": \n')
    result = runner.invoke(
        app, ["capture", str(bad), "-o", str(tmp_path / "x.safetensors"), "-m", str(tiny_dir)]
    )
    assert result.exit_code == 2 and "bad.jsonl:1: not valid JSON" in result.output
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "hi", "response": "yo"}\n')
    result = runner.invoke(
        app,
        [
            "capture",
            str(good),
            "-o",
            str(tmp_path / "x.safetensors"),
            "-m",
            str(tiny_dir),
            "--layers",
            "7",
        ],
    )
    assert result.exit_code == 2 and "layer 7 is out of range" in result.output


def test_models_lists_aliases():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "smollm2-135m-instruct" in result.output and "gemma-3-270m" in result.output


def test_vectors_extract_info_and_convert(tiny_dir, tmp_path):
    import torch

    from interp.vectors import DirectionSet

    pos, neg = tmp_path / "pos.jsonl", tmp_path / "neg.jsonl"
    pos.write_text(
        json.dumps({"prompt": "I loved it", "response": " great"})
        + "\n"
        + json.dumps({"prompt": "A delight", "response": " yes"})
        + "\n"
    )
    neg.write_text(
        json.dumps({"prompt": "I hated it", "response": " awful"})
        + "\n"
        + json.dumps({"prompt": "A disaster", "response": " no"})
        + "\n"
    )
    out = tmp_path / "v.safetensors"
    result = runner.invoke(
        app,
        ["vectors", "extract", str(pos), str(neg), "-o", str(out), "-m", str(tiny_dir), "--paired"],
    )
    assert result.exit_code == 0, result.output
    ds = DirectionSet.load(out)
    assert ds.meta.method == "paired_mean_diff(response:mean)" and ds.layers == (0, 1, 2, 3)
    info = runner.invoke(app, ["vectors", "info", str(out)])
    assert info.exit_code == 0 and "paired_mean_diff" in info.output and "0-3" in info.output

    refused = runner.invoke(app, ["vectors", "convert", str(out), str(tmp_path / "v.gguf")])
    assert refused.exit_code == 2 and "cannot steer block 0" in refused.output
    ok = runner.invoke(
        app, ["vectors", "convert", str(out), str(tmp_path / "v.gguf"), "--layers", "1-3"]
    )
    assert ok.exit_code == 0, ok.output
    no_model = runner.invoke(
        app, ["vectors", "convert", str(tmp_path / "v.gguf"), str(tmp_path / "b.safetensors")]
    )
    assert no_model.exit_code == 2 and "needs --model" in no_model.output
    back = runner.invoke(
        app,
        [
            "vectors",
            "convert",
            str(tmp_path / "v.gguf"),
            str(tmp_path / "b.safetensors"),
            "-m",
            str(tiny_dir),
        ],
    )
    assert back.exit_code == 0, back.output
    assert torch.equal(
        DirectionSet.load(tmp_path / "b.safetensors").vectors, ds.at([1, 2, 3]).vectors
    )
    negative = runner.invoke(
        app, ["vectors", "convert", str(out), str(tmp_path / "n.gguf"), "--layers", "-1"]
    )
    assert negative.exit_code == 2 and "block indices >= 0" in negative.output
    weird = runner.invoke(app, ["vectors", "convert", str(out), str(tmp_path / "v.pt")])
    assert weird.exit_code == 2 and "writes .gguf" in weird.output


def test_steer_rejects_bad_arguments_before_loading(tiny_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n')
    base = [
        "steer",
        str(prompts),
        "-v",
        str(tmp_path / "missing.safetensors"),
        "-o",
        str(tmp_path / "o"),
        "-m",
        str(tiny_dir),
    ]
    assert "unknown metric 'vibes'" in runner.invoke(app, [*base, "--metric", "vibes"]).output
    assert "unknown scale 'huge'" in runner.invoke(app, [*base, "--scale", "huge"]).output
    assert "no such file" in runner.invoke(app, base).output
