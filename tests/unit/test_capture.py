import importlib

import pytest
import torch

import interp
from interp.batching import Example, PaddingSide, encode_all, make_batch
from interp.capture import Activations, capture
from interp.positions import parse
from interp.sites import SITES
from tests.tolerance import FP32, assert_close

capture_module = importlib.import_module("interp.capture")  # the package re-exports the function

DATA = [
    Example(
        "Tell me about the ocean and the mountains.", " The ocean is deep. Wait, let me check."
    ),
    Example(
        [{"role": "user", "content": "Why did the chicken cross the road?"}],
        "To get to the other side.",
    ),
    Example("Hi", " Yes"),
    {"prompt": "Snowflakes drifted lazily", "response": " from the gray sky."},
    "I am an interpretability researcher.",
]
REDUCE = {
    "resp": "response:mean",
    "psum": "prompt:sum",
    "last": "last",
    "norm": "all&!first:norm",
    "tok": "all:tokens",
}


def reference(model, data, layers):
    """Reductions computed independently: run_with_cache on one unpadded example at a time."""
    out: dict[tuple[str, str, int], torch.Tensor | None] = {}
    for i, row in enumerate(encode_all(model, data)):
        ids = torch.tensor([row.ids])
        names = [model.hook_name(s, layer) for s in SITES for layer in layers]
        with torch.no_grad():
            _, cache = model.bridge.run_with_cache(ids, names_filter=names)
        for site in SITES:
            acts = torch.stack([cache[model.hook_name(site, layer)][0] for layer in layers], dim=1)
            n, p = len(row), row.prompt_len
            out[("tok", site, i)] = acts
            out[("resp", site, i)] = acts[p:].mean(0) if n > p else None
            out[("psum", site, i)] = acts[:p].sum(0)
            out[("last", site, i)] = acts[-1]
            out[("norm", site, i)] = acts[1:].norm(dim=-1).mean(0)
    return out


def test_capture_matches_an_independent_computation(tiny):
    layers = [0, 2, 3]
    data = DATA[:4]  # the fifth has no response
    acts = capture(
        tiny, data, REDUCE, layers=layers, sites=list(SITES), batch_size=3, progress=False
    )
    ref = reference(tiny, data, layers)
    for site in SITES:
        for name in ("resp", "psum", "last", "norm"):
            got = acts.get(name, site)
            want = torch.stack([ref[(name, site, i)] for i in range(len(data))])
            assert_close(got, want, rel=FP32, what=f"{name} {site}")
        tokens = acts.get("tok", site)
        want = torch.cat([ref[("tok", site, i)] for i in range(len(data))])
        assert_close(tokens, want, rel=FP32, what=f"tok {site}")
    example, position = acts.token_index["tok"]
    rows = encode_all(tiny, data)
    assert example.tolist() == [i for i, r in enumerate(rows) for _ in range(len(r))]
    assert position.tolist() == [p for r in rows for p in range(len(r))]


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])
def test_batch_size_and_padding_do_not_change_results(model_fixture, request):
    """Equal to float rounding, relative to the activations' size: which matmul kernel runs (so
    how it rounds) depends on the batch shape and the CPU (an AMX Xeon moved values of ~10 by
    2.4e-5); a pad token attended to or a wrong position moves them by 1e-3 or more."""
    model = request.getfixturevalue(model_fixture)
    data = DATA[:4]
    base = capture(model, data, REDUCE, batch_size=1, padding_side="right", progress=False)
    cases: list[tuple[int, PaddingSide]] = [(8, "right"), (8, "left"), (3, "left")]
    for batch_size, side in cases:
        other = capture(
            model, data, REDUCE, batch_size=batch_size, padding_side=side, progress=False
        )
        for key, value in base.data.items():
            assert_close(other.data[key], value, rel=FP32, what=f"{key} ({batch_size}, {side})")


def count_calls(module):
    calls = []
    handle = module.register_forward_pre_hook(lambda *args: calls.append(1))
    return calls, handle


def test_forward_stops_after_the_deepest_layer(tiny):
    deep, h1 = count_calls(tiny.bridge.blocks[3])
    unembed, h2 = count_calls(tiny.bridge.unembed)
    try:
        capture(tiny, DATA, "last", layers=[1], progress=False)
        assert deep == [] and unembed == []
        capture(tiny, DATA, "last", layers=[3], progress=False)  # last block: still no unembedding
        assert deep and unembed == []
    finally:
        h1.remove()
        h2.remove()


def test_cache_is_reused_and_interrupted_runs_resume(tiny, tmp_path, monkeypatch):
    data = DATA[:4] * 2 + [Example("Trial 1: Do you detect an injected thought?", " No.")]
    fresh = capture(tiny, data, REDUCE, batch_size=1, progress=False)

    real = capture_module._run_batch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # the run dies part-way through the third shard
        return real(*args, **kwargs)

    monkeypatch.setattr(capture_module, "_run_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        capture(tiny, data, REDUCE, batch_size=1, shard_size=2, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(capture_module, "_run_batch", real)
    assert len(list(tmp_path.rglob("shard-*.safetensors"))) == 2  # two finished shards kept

    resumed = capture(
        tiny, data, REDUCE, batch_size=4, shard_size=2, cache_dir=tmp_path, progress=False
    )
    assert resumed.meta["from_cache"] == 4 + 4  # the duplicated examples hit the cache too
    for key, value in fresh.data.items():
        assert_close(resumed.data[key], value, rel=FP32, what=str(key))  # batch 4 against 1

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although everything was cached")

    monkeypatch.setattr(capture_module, "_run_batch", no_model)
    again = capture(tiny, data, REDUCE, cache_dir=tmp_path, progress=False)
    assert again.meta["from_cache"] == len(data)
    for key, value in resumed.data.items():
        assert torch.equal(again.data[key], value)
    assert torch.equal(again.token_index["tok"][1], resumed.token_index["tok"][1])


def test_bad_input_errors(tiny):
    with pytest.raises(
        ValueError, match=r"reduction 'resp' \(response:mean\) selects no tokens in example 1"
    ):
        capture(
            tiny,
            [Example("Hi", " yes"), "no response here"],
            {"resp": "response:mean"},
            progress=False,
        )
    with pytest.raises(ValueError, match="input is empty"):
        capture(tiny, [], "last", progress=False)
    with pytest.raises(ValueError, match="out of range"):
        capture(tiny, DATA, "last", layers=[9], progress=False)
    with pytest.raises(ValueError, match="unknown site 'resid'"):
        capture(tiny, DATA, "last", sites="resid", progress=False)
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        capture(tiny, DATA, "last:median", progress=False)
    assert interp.Reduction.parse('from("Trial 1:")') == interp.Reduction(parse('from("Trial 1:")'))


def test_save_and_load_round_trip(tiny, tmp_path):
    acts = capture(
        tiny, DATA[:3], REDUCE, layers="1-2", sites=["resid_pre", "mlp_out"], progress=False
    )
    path = acts.save(tmp_path / "a.safetensors")
    back = Activations.load(path)
    assert back.layers == [1, 2] and back.sites == ["resid_pre", "mlp_out"]
    assert (
        back.meta["model"] == tiny.name
        and back.meta["layer_convention"] == "transformer_lens_block"
    )
    for key, value in acts.data.items():
        assert torch.equal(back.data[key], value)
    assert torch.equal(back.token_index["tok"][0], acts.token_index["tok"][0])
    assert back.at("resp", 2, "mlp_out").shape == (3, tiny.d_model)
    with pytest.raises(KeyError, match="pass site="):
        back["resp"]


def test_bfloat16_model_captures_in_float32(tiny_dir):
    fp32 = interp.load_model(str(tiny_dir), dtype="float32")
    bf16 = interp.load_model(str(tiny_dir), dtype="bfloat16")
    a = capture(fp32, DATA[:3], "response:mean", progress=False)
    b = capture(bf16, DATA[:3], "response:mean", progress=False)
    assert b["response:mean"].dtype == torch.float32
    rel = (a["response:mean"] - b["response:mean"]).norm(dim=-1) / a["response:mean"].norm(dim=-1)
    assert rel.max() < 0.05


def test_padding_side_batch_is_what_the_model_sees(tiny):
    rows = encode_all(tiny, DATA[:2])
    batch = make_batch(rows, tiny.tokenizer.pad_token_id, "left")
    with torch.no_grad():
        padded = tiny.bridge(
            batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        )
        alone = tiny.bridge(torch.tensor([rows[1].ids]))
    assert_close(padded[1, -len(rows[1]) :], alone[0], rel=FP32, what="left-padded row")


def test_layers_must_be_whole_block_indices(tiny, monkeypatch):
    # used to pass int(x): layers=[2.9] captured block 2 and [True] block 1, silently
    with pytest.raises(TypeError, match=r"whole block index \(int\), got True \(bool\)"):
        capture(tiny, DATA[:2], "last", layers=[True], progress=False)
    # as users run it (the test suite's run-time type checks would refuse the float first)
    import jaxtyping

    monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)
    with pytest.raises(TypeError, match=r"whole block index \(int\), got 2.9 \(float\)"):
        capture(tiny, DATA[:2], "last", layers=[2.9], progress=False)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"got 1.0 \(float\)"):
        tiny.layers([0, 1.0])
    assert tiny.layers([torch.tensor(3), -1]) == [3]  # integer scalars of any kind are fine


def test_a_backwards_layer_range_is_refused(tiny):
    # "3-1" used to resolve to no layers at all, and the error came later and said less
    with pytest.raises(ValueError, match=r"'3-1'.*runs backwards.*'1-3'"):
        tiny.layers("3-1")
    # mixed signs are checked against the depth: -1 is block 3 of 4
    with pytest.raises(ValueError, match=r"'-1-2'.*block 3 to block 2.*'2-3'"):
        tiny.layers("-1-2")
    assert tiny.layers("1--1") == [1, 2, 3]


def test_batch_and_shard_sizes_must_be_positive(tiny, tmp_path):
    # shard_size=-1 used to skip every batch and return uninitialised memory
    for bad in (-1, 0):
        with pytest.raises(
            ValueError, match=rf"shard_size must be a positive whole number, got {bad}"
        ):
            capture(tiny, DATA[:2], "last", shard_size=bad, progress=False)
    capture(tiny, DATA[:2], "last", cache_dir=tmp_path, progress=False)
    # with everything cached, batch_size=0 used to be accepted without a word
    with pytest.raises(ValueError, match="batch_size must be a positive whole number, got 0"):
        capture(tiny, DATA[:2], "last", batch_size=0, cache_dir=tmp_path, progress=False)


def test_a_truncated_cache_shard_is_recomputed_with_a_warning(tiny, tmp_path):
    data = DATA[:4]
    fresh = capture(tiny, data, REDUCE, progress=False)
    capture(tiny, data, REDUCE, shard_size=2, cache_dir=tmp_path, progress=False)
    shards = sorted(tmp_path.rglob("shard-*.safetensors"))
    assert len(shards) == 2
    damaged = shards[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.warns(UserWarning, match=rf"{damaged.name}.*unreadable"):
        again = capture(tiny, data, REDUCE, shard_size=2, cache_dir=tmp_path, progress=False)
    assert again.meta["from_cache"] == 2  # the intact shard only
    for key, value in fresh.data.items():
        assert_close(again.data[key], value, rel=FP32, what=str(key))  # another batch shape
    assert not damaged.exists() and len(list(tmp_path.rglob("shard-*.safetensors"))) == 2
    third = capture(tiny, data, REDUCE, shard_size=2, cache_dir=tmp_path, progress=False)
    assert third.meta["from_cache"] == len(data)  # the recomputed shard was written back


def test_a_shard_missing_a_tensor_is_recomputed_with_a_warning(tiny, tmp_path):
    """Readable digests but a tensor gone (a shard rewritten by hand): recomputed, not a
    KeyError traceback."""
    from interp.io import load_tensors, save_tensors

    data = DATA[:4]
    fresh = capture(tiny, data, REDUCE, progress=False)
    capture(tiny, data, REDUCE, shard_size=2, cache_dir=tmp_path, progress=False)
    damaged = sorted(tmp_path.rglob("shard-*.safetensors"))[0]
    tensors, meta = load_tensors(damaged)
    dropped = sorted(tensors)[0]
    save_tensors(damaged, {k: v for k, v in tensors.items() if k != dropped}, meta)
    with pytest.warns(UserWarning, match=rf"{damaged.name}.*unreadable"):
        again = capture(tiny, data, REDUCE, shard_size=2, cache_dir=tmp_path, progress=False)
    assert again.meta["from_cache"] == 2
    for key, value in fresh.data.items():
        assert_close(again.data[key], value, rel=FP32, what=str(key))  # another batch shape


def run_cli(tiny_dir, tmp_path, *extra):
    from typer.testing import CliRunner

    from interp.cli.app import app

    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "Tell me about the ocean", "response": " It is deep."}\n')
    args = ["capture", str(data), "-m", str(tiny_dir), *extra]
    return CliRunner().invoke(app, args)


def test_cli_capture_refuses_a_reduction_name_given_twice(tiny_dir, tmp_path):
    # the second --reduce used to replace the first without a word
    out = tmp_path / "a.safetensors"
    result = run_cli(
        tiny_dir, tmp_path, "-o", str(out), "--reduce", "x=last", "--reduce", "x=first"
    )
    assert result.exit_code == 2, result.output
    assert "--reduce name 'x' is given twice ('last' and 'first')" in result.output
    result = run_cli(tiny_dir, tmp_path, "-o", str(out), "--reduce", "last", "--reduce", "last")
    assert result.exit_code == 2 and "'last' is given twice" in result.output
    assert not out.exists()


def test_cli_capture_errors_are_one_line(tiny_dir, tmp_path):
    # an existing directory as --out used to end in an IsADirectoryError traceback
    result = run_cli(tiny_dir, tmp_path, "-o", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "is an existing directory" in result.output and "Traceback" not in result.output
    result = run_cli(tiny_dir, tmp_path, "-o", str(tmp_path / "a.safetensors"), "--layers", "3-1")
    assert result.exit_code == 2 and "'3-1'" in result.output and "'1-3'" in result.output


def test_explicit_positions_never_share_cache_rows_between_equal_texts(tiny, tmp_path):
    """Two identical texts with different Explicit masks: the cache used to key rows by tokens
    alone, so a cached run gave both examples the last-written row."""
    from interp.capture import Reduction
    from interp.positions import Explicit

    data = ["Tell me about the ocean", "Tell me about the ocean"]
    pos = Explicit.of([[p == k for p in range(6)] for k in (1, 4)])
    reduce = {"x": Reduction(pos, "mean"), "t": Reduction(pos, "tokens")}
    ids = torch.tensor([encode_all(tiny, data[:1])[0].ids])
    name = tiny.hook_name("resid_post", 1)
    with torch.no_grad():
        _, cache = tiny.bridge.run_with_cache(ids, names_filter=[name])
    expected = cache[name][0, [1, 4]]  # example 0 reads position 1, example 1 position 4
    for run in ("fresh", "cached"):
        got = capture(tiny, data, reduce, layers=[1], cache_dir=tmp_path, progress=False)
        assert got.meta["from_cache"] == (2 if run == "cached" else 0)
        assert_close(got["x"][:, 0], expected, rel=FP32, what=f"{run} mean")
        assert_close(got["t"][:, 0], expected, rel=FP32, what=f"{run} tokens")
        assert got.token_index["t"][1].tolist() == [1, 4]


def test_the_cache_keys_the_model_dtype(tiny_dir, tmp_path):
    """fp32 and bf16 loads share the fingerprint; the capture cache must still tell them apart."""
    fp32 = interp.load_model(str(tiny_dir), device="cpu")
    bf16 = interp.load_model(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert fp32.fingerprint() == bf16.fingerprint()
    first = capture(fp32, DATA[:2], "last", layers=[1], cache_dir=tmp_path, progress=False)
    second = capture(bf16, DATA[:2], "last", layers=[1], cache_dir=tmp_path, progress=False)
    alone = capture(bf16, DATA[:2], "last", layers=[1], progress=False)
    assert second.meta["from_cache"] == 0 and torch.equal(second["last"], alone["last"])
    assert not torch.equal(first["last"], second["last"])


def test_reduction_tensors_follow_the_activation_device():
    """Weights and masks meet each hook's activation on its device, copied once per device.

    Only the CPU is here, so the move is checked on the `meta` device; a model split over GPUs
    (device_map) is not exercised by this suite.
    """
    at = capture_module._PerDevice()
    weights = torch.ones(2, 3, 4)
    meta = torch.device("meta")
    moved = at("w", weights, meta)
    assert moved.device == meta and moved.shape == weights.shape
    assert at("w", weights, meta) is moved  # one copy per (tensor, device)
    assert at("w", weights, torch.device("cpu")) is weights  # already there: no copy
    assert at("mask", weights.bool(), meta) is not moved  # keyed by name, not only device
