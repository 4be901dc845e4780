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
    assert ds.meta.fingerprint in info.output and ds.digest() in info.output

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
    backwards = runner.invoke(
        app, ["vectors", "convert", str(out), str(tmp_path / "r.gguf"), "--layers", "3-1"]
    )
    assert backwards.exit_code == 2 and "runs backwards" in backwards.output
    assert not (tmp_path / "r.gguf").exists()  # no empty GGUF written with exit 0


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


# -- interp steer and interp vectors: arguments checked before work, resid_norm, metrics ---------


def _steer_setup(tiny_dir, tmp_path, seed=0, created="2026-01-01T00:00:00+00:00"):
    """A prompts file and a random vector with default metadata and a fixed creation time."""
    from dataclasses import replace

    import torch

    import interp
    from interp.vectors import DirectionSet

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Tell me about the ocean"}) + "\n")
    lm = interp.load_model(str(tiny_dir), device="cpu")
    g = torch.Generator().manual_seed(seed)
    ds = DirectionSet.from_tensor(torch.randn(4, 64, generator=g) * 6, lm)
    path = replace(ds, meta=replace(ds.meta, created=created)).save(
        tmp_path / f"v{seed}.safetensors"
    )
    return prompts, path, lm


def _steer(prompts, vector, out, tiny_dir, *extra):
    args = ["steer", str(prompts), "-v", str(vector), "-o", str(out), "-m", str(tiny_dir)]
    args += ["--layers", "1,2", "--max-new-tokens", "6", *extra]
    return runner.invoke(app, args)


def test_steer_checks_coefficients_regex_and_output_before_any_work(tiny_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--coef", "nan"], tmp_path / "o1", "--coef nan is not a finite number"),
        (["--coef", "1", "--coef", "inf"], tmp_path / "o2", "--coef inf is not a finite number"),
        (["--metric", "match:(unclosed"], tmp_path / "o3", "invalid regular expression"),
        ([], tmp_path / "afile", "is an existing file; give a directory path"),
    ]
    for extra, out, says in cases:
        result = _steer(prompts, tmp_path / "missing.safetensors", out, tiny_dir, *extra)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and lines == [lines[-1]], result.output
        assert says in lines[-1], result.output  # not "no such file": checked before the vector
        assert out.is_file() or not out.exists()


def test_vectors_commands_refuse_a_directory_where_a_file_goes(tiny_dir, tmp_path):
    prompts, vector, _ = _steer_setup(tiny_dir, tmp_path)
    (tmp_path / "d.gguf").mkdir()
    (tmp_path / "d.safetensors").mkdir()
    convert = runner.invoke(
        app, ["vectors", "convert", str(vector), str(tmp_path / "d.gguf"), "--layers", "1-3"]
    )
    assert convert.exit_code == 2 and "target" in convert.output
    assert "d.gguf is an existing directory; give a file path" in convert.output
    into = runner.invoke(
        app, ["vectors", "convert", str(tmp_path / "d.gguf"), str(tmp_path / "x.safetensors")]
    )
    assert into.exit_code == 2 and "d.gguf is a directory; give a file" in into.output
    extract = runner.invoke(
        app,
        ["vectors", "extract", str(prompts), str(prompts), "-o", str(tmp_path / "d.safetensors")],
    )
    assert extract.exit_code == 2 and "--out" in extract.output
    assert "d.safetensors is an existing directory" in extract.output
    (tmp_path / "afile").write_text("x")
    steer = _steer(prompts, vector, tmp_path / "afile", tiny_dir)  # a real vector this time
    assert steer.exit_code == 2 and "afile is an existing file" in steer.output, steer.output
    assert "Traceback" not in steer.output


def _resid_norm_by_hand(tiny_dir, texts, layers):
    """Mean over texts of the mean L2 norm of resid_post (first token left out), via plain HF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    per_text = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            hidden = hf(ids, output_hidden_states=True).hidden_states
        # hidden_states[l + 1] is resid_post of block l (not normed for l < n_layers - 1)
        per_text.append([float(hidden[layer + 1][0, 1:].norm(dim=-1).mean()) for layer in layers])
    return torch.tensor(per_text).mean(0)


def test_vectors_resid_norm_stores_the_statistic(tiny_dir, tmp_path):
    import torch

    from interp.vectors import DirectionSet

    _, vector, _ = _steer_setup(tiny_dir, tmp_path)
    texts = ["Tell me about the ocean and the mountains.", "The capital of France is Paris."]
    data = tmp_path / "texts.jsonl"
    data.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    out = tmp_path / "with_norm.safetensors"
    args = ["vectors", "resid-norm", str(vector), "--data", str(data), "-m", str(tiny_dir)]
    result = runner.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    ds = DirectionSet.load(out)
    expected = _resid_norm_by_hand(tiny_dir, texts, [0, 1, 2])  # block 3's hidden state is normed
    assert torch.allclose(ds.stats["resid_norm"][:3], expected, rtol=1e-4)
    assert "resid_norm" not in DirectionSet.load(vector).stats  # the source is left alone


def test_steer_resid_norm_measures_the_statistic_when_missing(tiny_dir, tmp_path):
    prompts, vector, _ = _steer_setup(tiny_dir, tmp_path)
    result = _steer(prompts, vector, tmp_path / "o", tiny_dir, "--scale", "resid_norm")
    assert result.exit_code == 0, result.output
    assert "has no resid_norm stat: measured it on 1 prompt" in result.output
    assert "interp vectors resid-norm" in result.output
    from interp.runs.store import read_records

    records = read_records(tmp_path / "o" / "generations.jsonl")
    assert len(records) == 6 and {r["config"]["scale"] for r in records} == {"resid_norm"}


def test_steer_default_metric_is_the_projection_of_the_response(tiny_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.runs.store import read_records
    from interp.vectors import DirectionSet
    from tests.tolerance import FP32

    prompts, vector, _ = _steer_setup(tiny_dir, tmp_path)
    result = _steer(prompts, vector, tmp_path / "o", tiny_dir)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "steer_projection.html").exists()
    records = read_records(tmp_path / "o" / "generations.jsonl")
    assert len(records) == 6
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    ds = DirectionSet.load(vector)
    checked = 0
    for record in records:
        prompt = tok(record["config"]["prompt"]["prompt"])["input_ids"]
        response = tok(record["text"], add_special_tokens=False)["input_ids"]
        if not response:
            continue
        with torch.no_grad():
            hidden = hf(torch.tensor([prompt + response]), output_hidden_states=True)
        layer = record["config"]["layer"]
        mean = hidden.hidden_states[layer + 1][0, len(prompt) :].mean(0)
        expected = float(mean @ (ds[layer] / ds[layer].norm()))
        # rounding of a projection scales with the vector projected, not with the projection
        assert abs(record["projection"] - expected) <= FP32 * float(mean.norm()), record
        checked += 1
    assert checked >= 4


def test_steer_into_a_used_directory_computes_new_configs_and_keeps_them_apart(tiny_dir, tmp_path):
    from interp.runs.store import read_records
    from interp.vectors import DirectionSet

    prompts, first, _ = _steer_setup(tiny_dir, tmp_path, seed=0)
    _, second, _ = _steer_setup(tiny_dir, tmp_path, seed=1)
    assert DirectionSet.load(first).meta == DirectionSet.load(second).meta
    out = tmp_path / "o"
    one = _steer(prompts, first, out, tiny_dir, "--metric", "length")
    assert one.exit_code == 0, one.output
    two = _steer(prompts, second, out, tiny_dir, "--metric", "length")
    assert two.exit_code == 0, two.output
    records = read_records(out / "generations.jsonl")
    # each cell names its vector by the values at its layer (`_steer` sweeps blocks 1 and 2)
    digests = {DirectionSet.load(v).digest_at([b]) for v in (first, second) for b in (1, 2)}
    assert len(records) == 12 and {r["config"]["vector"] for r in records} == digests
    assert "holds several configurations (differing in vector)" in two.output
    from interp.figures.plots import steering_curve

    names = sorted(trace.name for trace in steering_curve(out / "generations.jsonl", "length").data)
    assert len(names) == 4 and len(set(names)) == 4  # 2 vectors × 2 blocks, none averaged
    assert all("vector=" in name for name in names)
    three = _steer(prompts, first, out, tiny_dir, "--temperature", "0.8", "--metric", "length")
    assert three.exit_code == 0, three.output
    assert len(read_records(out / "generations.jsonl")) == 18  # another decoding setting: new
    assert "differing in temperature, vector" in three.output
