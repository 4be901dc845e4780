"""Loading SAEs: our directories, shipped names and published releases, and every refusal.

The hub path runs SAELens's real `SAE.from_pretrained` for a Gemma Scope release with the
Hugging Face hub offline: the test writes a hub cache (`models--google--gemma-scope-2b-pt-res/
refs/main` + `snapshots/<commit>/<path>/params.npz`) that holds what SAELens's `gemma_2` loader
downloads, so release → repo and path (pretrained_saes.yaml), `hf_hub_download`, the npz
conversion and the config all run for real. The Gemma Scope loader takes d_sae from the width in
the folder name, so the arrays are full size (2304 × 16384, stored as float16 to halve the file).
Gemma Scope 2 (Gemma 3) cannot be tested that way: its loader reads tensor shapes with HTTP range
requests (`get_safetensors_tensor_shapes`), which no cache answers. So it runs against a hub on
127.0.0.1 (`tests/fake_hub.py`) that serves the files the test writes, over real HTTP.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import interp.saes.load as load_module
from interp.capture import capture
from interp.io import save_tensors
from interp.saes.load import LoadedSAE, load_sae, shipped_saes
from interp.saes.train import save_sae
from tests.tiny import write_tiny_model
from tests.tiny_sae import write_sae
from tests.tolerance import FP32, assert_close

TEXTS = ["The capital of France is Paris.", "Tell me about the ocean and the mountains today."]


@pytest.fixture(scope="module")
def ours(tiny, tmp_path_factory):
    """An SAE trained-side saved with `save_sae` on `tiny` (block 2), and the weights it wrote."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(1)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=64, d_sae=32, k=4, normalize_activations="expected_average_only_in"
        )
    )
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(32) * 0.1)
        sae.b_dec.copy_(torch.randn(64) * 0.5)
    expected = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(expected)
    path = tmp_path_factory.mktemp("ours") / "block2-resid_post"
    save_sae(sae, path, model=tiny, layer=2, site="resid_post", extra={"train": {"k": 4}})
    metrics = {"metrics": {"explained_variance": 0.5, "l0": 4.0}}
    (path / "metrics.json").write_text(json.dumps(metrics))
    density = torch.linspace(0, 0.5, 32)
    save_tensors(path / "density.safetensors", {"density": density}, {"tokens": 10})
    return path, expected, density


def test_round_trip_of_an_sae_saved_by_save_sae(ours, tiny):
    path, expected, density = ours
    loaded = load_sae(path)
    assert (loaded.layer, loaded.site, loaded.hook) == (2, "resid_post", "blocks.2.hook_resid_post")
    assert (loaded.d_in, loaded.d_sae, loaded.k, loaded.architecture) == (64, 32, 4, "topk")
    assert loaded.model_name == tiny.name and loaded.model_fingerprint == tiny.fingerprint()
    assert loaded.metrics == {"metrics": {"explained_variance": 0.5, "l0": 4.0}}
    assert loaded.density is not None and torch.equal(loaded.density, density)
    for key, value in expected.items():
        got = getattr(loaded.sae, key)
        assert got.dtype == torch.float32, key
        assert torch.equal(got, value.half().float()), key  # fp16 on disk, fp32 in memory
    assert loaded.check(tiny) is loaded


def _reference(path: Path, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """TopK SAE inference written out from the file's tensors (what SAELens must compute)."""
    w = {key: v.float() for key, v in load_file(str(path / "sae_weights.safetensors")).items()}
    norms = w["W_dec"].norm(dim=-1)
    pre = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * norms  # apply_b_dec_to_input, rescale
    top = pre.topk(k, dim=-1)
    feats = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    recon = (feats / norms) @ w["W_dec"] + w["b_dec"]
    return feats, recon


@pytest.fixture(scope="module")
def captured(tiny):
    return capture(tiny, TEXTS, {"tok": "all:tokens", "last": "last"}, layers=[1, 2])


def test_encode_and_decode_equal_an_independent_computation(tiny, tmp_path, captured):
    path = write_sae(tmp_path / "sae", model_name=tiny.name, fingerprint=tiny.fingerprint())
    loaded = load_sae(path).check(tiny)
    x = captured.at("tok", 2)
    feats, recon = _reference(path, x, k=4)
    got = loaded.encode_captured(captured, "tok")
    assert got.shape == (x.shape[0], 32)
    assert_close(got, feats, rel=FP32, what="latents")
    assert bool(((got > 0).sum(-1) <= 4).all()) and bool((got > 0).any())
    assert_close(loaded.decode(got), recon, rel=FP32, what="reconstruction")
    # any leading shape, any float dtype in
    batched = loaded.encode(x.reshape(1, -1, 64).half())
    assert batched.dtype == torch.float32 and batched.shape == (1, x.shape[0], 32)
    last = loaded.encode_captured(captured, "last")
    assert_close(last, _reference(path, captured.at("last", 2), k=4)[0], rel=FP32, what="last")


def test_encode_captured_refuses_another_block_site_or_model(tiny, tiny_base, tmp_path, captured):
    path = write_sae(
        tmp_path / "b3", hook="blocks.3.hook_resid_post", fingerprint=tiny.fingerprint()
    )
    with pytest.raises(
        ValueError, match=r"reads block 3 resid_post, but the capture holds blocks \[1, 2\]"
    ):
        load_sae(path).encode_captured(captured, "tok")
    mlp = write_sae(tmp_path / "mlp", hook="blocks.2.hook_mlp_out")
    with pytest.raises(ValueError, match=r"reads block 2 mlp_out.*of resid_post"):
        load_sae(mlp).encode_captured(captured, "tok")
    other = write_sae(
        tmp_path / "o", model_name=tiny_base.name, fingerprint=tiny_base.fingerprint()
    )
    with pytest.raises(
        ValueError, match=f"fingerprint {tiny.fingerprint()}.*{tiny_base.fingerprint()}"
    ):
        load_sae(other).encode_captured(captured, "tok")
    norms = capture(tiny, TEXTS, {"n": "all:norm"}, layers=[2])
    with pytest.raises(ValueError, match=r"reduction 'n' .* not activations"):
        load_sae(write_sae(tmp_path / "b2")).encode_captured(norms, "n")


def test_check_refuses_other_width_depth_site_and_weights(tiny, tiny_base, tmp_path):
    fp = tiny.fingerprint()
    narrow = load_sae(write_sae(tmp_path / "narrow", d_in=32, model_name="wide-model"))
    with pytest.raises(ValueError, match=r"d_in 32 but .* d_model 64; the SAE is for 'wide-model'"):
        narrow.check(tiny)
    deep = load_sae(write_sae(tmp_path / "deep", hook="blocks.7.hook_resid_post", fingerprint=fp))
    with pytest.raises(ValueError, match=r"reads block 7 but .* has 4 layers \(0–3\)"):
        deep.check(tiny)
    other = load_sae(write_sae(tmp_path / "other", model_name=tiny.name, fingerprint=fp))
    with pytest.raises(
        ValueError,
        match=f"is for '{tiny.name}' \\(weights fingerprint {fp}\\) but the model is "
        f"'{tiny_base.name}'.*different weights",
    ):
        other.check(tiny_base)
    assert other.check(tiny_base, allow_other_model=True) is other


def test_check_refuses_a_site_the_architecture_lacks(tmp_path):
    from interp.models import load_model

    neox = load_model(str(write_tiny_model(tmp_path / "neox", "gpt_neox", chat=False)))
    sae = load_sae(write_sae(tmp_path / "mid", hook="blocks.1.hook_resid_mid"))
    with pytest.raises(
        ValueError, match=r"reads blocks.1.hook_resid_mid, which is missing.*parallel"
    ):
        sae.check(neox, allow_other_model=True)


def test_without_a_fingerprint_names_are_compared(tiny, tmp_path):
    same = load_sae(
        write_sae(tmp_path / "same", model_name="Some/Path/" + Path(tiny.name).name.upper())
    )
    assert same.check(tiny) is same  # last path component, case-insensitive
    other = load_sae(write_sae(tmp_path / "other", model_name="gemma-2-2b"))
    with pytest.raises(
        ValueError, match=r"is for 'gemma-2-2b' but the model is .*no weights fingerprint"
    ):
        other.check(tiny)
    assert load_sae(write_sae(tmp_path / "none")).check(tiny) is not None  # nothing recorded


def test_latent_and_decoder_row(tiny, tmp_path, captured):
    path = write_sae(tmp_path / "sae")
    loaded = load_sae(path)
    w_dec = load_file(str(path / "sae_weights.safetensors"))["W_dec"].float()
    x = captured.at("tok", 2)
    feats = loaded.encode(x)
    for index in range(32):
        assert torch.equal(loaded.decoder_row(index), w_dec[index])
        latent = loaded.latent(index)
        active = feats[:, index] > 0
        # in the units encode reports, and the same write into the residual as decode
        assert_close(latent.activation(x[active]), feats[active, index], rel=FP32, what="act")
        assert_close(
            latent.decoder * feats[active, index, None],
            loaded.decode(feats * (torch.arange(32) == index))[active] - loaded.sae.b_dec,
            rel=FP32,
            what=f"latent {index}'s write",
        )
    for bad in (32, 5000, -1):
        with pytest.raises(
            ValueError,
            match=rf"latent {bad} is out of range for an SAE with 32 latents \(valid 0–31\)",
        ):
            loaded.latent(bad)
        with pytest.raises(ValueError, match=rf"latent {bad} is out of range"):
            loaded.decoder_row(bad)


# -- refusals -----------------------------------------------------------------------------
def _good(tmp_path: Path) -> Path:
    return write_sae(tmp_path / "sae")


def _edit_cfg(path: Path, **changes: object) -> None:
    cfg = json.loads((path / "cfg.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    (path / "cfg.json").write_text(json.dumps(cfg))


def _edit_meta(path: Path, **changes: object) -> None:
    cfg = json.loads((path / "cfg.json").read_text())
    cfg["metadata"].update(changes)
    (path / "cfg.json").write_text(json.dumps(cfg))


def test_a_missing_path_or_a_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"no SAE directory at {tmp_path / 'nowhere'}"):
        load_sae(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=f"no SAE directory at {tmp_path / 'nowhere'}"):
        load_sae(str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=f"SAE path {tmp_path / 'file'} is a file"):
        load_sae(tmp_path / "file")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "cfg.json").unlink(), "no cfg.json in {p}"),
        (lambda p: (p / "cfg.json").write_text("{not json"), "{p}/cfg.json is not valid JSON"),
        (lambda p: (p / "cfg.json").write_text("[1, 2]"), "{p}/cfg.json holds a JSON list"),
        (lambda p: _edit_cfg(p, d_sae=None), "{p}/cfg.json lacks d_sae"),
        (
            lambda p: _edit_cfg(p, architecture=None, d_in=None),
            "{p}/cfg.json lacks d_in, architecture",
        ),
        (lambda p: _edit_cfg(p, d_in="64"), "{p}/cfg.json: d_in is '64'"),
        (
            lambda p: _edit_cfg(p, architecture="banana"),
            "unknown SAE architecture 'banana'; SAELens knows .*topk",
        ),
        (
            lambda p: _edit_cfg(p, d_sae=16),
            r"W_enc has shape \[64, 32\] but cfg.json says d_in 64, d_sae 16",
        ),
        (lambda p: (p / "sae_weights.safetensors").unlink(), "no sae_weights.safetensors in {p}"),
        (
            lambda p: (p / "sae_weights.safetensors").write_bytes(
                (p / "sae_weights.safetensors").read_bytes()[:200]
            ),
            "{p}/sae_weights.safetensors is not a readable safetensors file",
        ),
        (
            lambda p: (p / "sae_weights.safetensors").write_bytes(os.urandom(4096)),
            "{p}/sae_weights.safetensors is not a readable safetensors file",
        ),
        (
            lambda p: save_file({"W_enc": torch.zeros(64, 32)}, p / "sae_weights.safetensors"),
            "{p}/sae_weights.safetensors has no W_dec",
        ),
        (
            lambda p: (p / "metrics.json").write_text("nan nan"),
            "{p}/metrics.json is not valid JSON",
        ),
        (
            lambda p: save_tensors(p / "density.safetensors", {"density": torch.zeros(7)}, {}),
            r"{p}/density.safetensors holds \(7,\) densities for 32 latents",
        ),
        (
            lambda p: (p / "density.safetensors").write_bytes(b"\x00" * 10),
            "{p}/density.safetensors is not a readable density file",
        ),
        (
            lambda p: _edit_meta(p, hook_name="blocks.2.attn.hook_z"),
            "reads hook 'blocks.2.attn.hook_z', which is not one of interp's sites.*resid_pre",
        ),
        (
            lambda p: _edit_meta(p, hook_name=None),
            "reads hook None, which is not one of interp's sites",
        ),
    ],
)
def test_a_damaged_directory_is_one_clear_error(tmp_path, damage, message):
    path = _good(tmp_path)
    damage(path)
    with pytest.raises(ValueError, match=message.format(p=path)):
        load_sae(path)


class _Payload:
    """Unpickling this makes a directory: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickled_weights_are_refused_without_unpickling(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Payload(marker))

    instead = _good(tmp_path / "a")
    (instead / "sae_weights.safetensors").unlink()
    (instead / "sae_weights.pt").write_bytes(payload)
    with pytest.raises(
        ValueError, match=r"holds sae_weights.pt \(PyTorch pickle\) instead of sae_weights"
    ):
        load_sae(instead)

    posing = _good(tmp_path / "b")
    (posing / "sae_weights.safetensors").write_bytes(payload)
    with pytest.raises(
        ValueError, match=r"sae_weights.safetensors is not a readable safetensors file"
    ):
        load_sae(posing)
    assert not marker.exists()
    assert load_sae(_good(tmp_path / "c")).d_sae == 32  # and a good one loads with no pickle


def test_shipped_names(tmp_path, monkeypatch):
    monkeypatch.setattr(load_module, "SHIPPED_ROOT", tmp_path)
    assert shipped_saes() == []
    write_sae(tmp_path / "tiny-model" / "block2-resid_post")
    write_sae(tmp_path / "other" / "block1-resid_post", hook="blocks.1.hook_resid_post")
    (tmp_path / "other" / "block9-resid_post").mkdir()  # no cfg.json: not an SAE
    assert shipped_saes() == ["other/block1-resid_post", "tiny-model/block2-resid_post"]
    assert shipped_saes("tiny-model") == ["tiny-model/block2-resid_post"]
    loaded = load_sae("tiny-model/block2-resid_post")
    assert (loaded.source, loaded.layer) == ("tiny-model/block2-resid_post", 2)
    with pytest.raises(
        ValueError,
        match="no shipped SAE 'tiny-model/block7-resid_post'; shipped SAEs: "
        "other/block1-resid_post, tiny-model/block2-resid_post",
    ):
        load_sae("tiny-model/block7-resid_post")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "not-a-release:layer_0",
            "unknown SAELens release 'not-a-release' in 'not-a-release:layer_0'",
        ),
        ("gemma-scope-2b-pt-res-canonica:x", "close: gemma-scope-2b-pt-res-canonical"),
        (
            "gemma-scope-2b-pt-res-canonical:layer_99/width_16k/canonical",
            "release 'gemma-scope-2b-pt-res-canonical' has no SAE 'layer_99/width_16k/canonical'; "
            r"it has \d+, e.g. layer_\d+/width_16k/canonical",
        ),
        (
            "goodfire-llama-3.1-8b-instruct:layer_19",
            "read by SAELens's 'goodfire' loader, which unpickles PyTorch files",
        ),
    ],
)
def test_bad_release_specs_are_one_line(spec, message):
    with pytest.raises(ValueError, match=message):
        load_sae(spec)


# -- the hub path, offline ------------------------------------------------------------------
def _hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> None:
    """A huggingface_hub cache holding `files` of `repo` at its main branch."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, data in files.items():
        target = repo_dir / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def test_a_gemma_scope_release_loads_through_the_hub_cache(tmp_path, monkeypatch):
    import io

    import huggingface_hub.constants as hub

    d_in, d_sae = 2304, 16384  # gemma-2-2b; width_16k
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {
        "W_enc": rng.standard_normal((d_in, d_sae), dtype=np.float32).astype(np.float16),
        "W_dec": rng.standard_normal((d_sae, d_in), dtype=np.float32).astype(np.float16),
        "b_enc": rng.standard_normal(d_sae).astype(np.float32),
        "b_dec": rng.standard_normal(d_in).astype(np.float32),
        "threshold": rng.random(d_sae).astype(np.float32),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # (stubs: allow_pickle in kwds)
    # pretrained_saes.yaml maps this id to google/gemma-scope-2b-pt-res,
    # folder layer_12/width_16k/average_l0_82
    path = "layer_12/width_16k/average_l0_82/params.npz"
    _hub_cache(tmp_path / "hub", "google/gemma-scope-2b-pt-res", {path: buffer.getvalue()})
    del buffer
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import time
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)

    spec = "gemma-scope-2b-pt-res-canonical:layer_12/width_16k/canonical"
    loaded = load_sae(spec)
    assert isinstance(loaded, LoadedSAE) and loaded.source == spec
    assert (loaded.layer, loaded.site, loaded.hook) == (
        12,
        "resid_post",
        "blocks.12.hook_resid_post",
    )
    assert (loaded.d_in, loaded.d_sae, loaded.architecture) == (d_in, d_sae, "jumprelu")
    assert loaded.model_name == "gemma-2-2b" and loaded.model_fingerprint is None
    for key, value in arrays.items():
        got = getattr(loaded.sae, key)
        assert got.dtype == torch.float32
        assert torch.equal(got, torch.from_numpy(value).float()), key
    x = torch.from_numpy(rng.standard_normal((3, d_in), dtype=np.float32))
    pre = x @ loaded.sae.W_enc + loaded.sae.b_enc  # Gemma Scope: b_dec not subtracted
    assert_close(loaded.encode(x), pre.relu() * (pre > loaded.sae.threshold), rel=FP32)

    # the same spec with the file gone from the cache: one line, not a hub traceback
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=f"could not load '{spec}' from the Hugging Face hub"):
        load_sae(spec)


# -- Gemma Scope 2, through a local hub server -----------------------------------------------
def gemma_scope_2_files(d_in: int = 640, d_sae: int = 16384) -> dict[str, np.ndarray]:
    """params.safetensors of a Gemma Scope 2 JumpReLU SAE (the names its repos use), random."""
    rng = np.random.default_rng(1)
    arrays = {
        "w_enc": rng.standard_normal((d_in, d_sae)) / np.sqrt(d_in),
        "w_dec": rng.standard_normal((d_sae, d_in)) / np.sqrt(d_sae),
        "b_enc": rng.standard_normal(d_sae) * 0.1,
        "b_dec": rng.standard_normal(d_in) * 0.1,
        "threshold": rng.random(d_sae) * 0.5,
    }
    return {key: value.astype(np.float32) for key, value in arrays.items()}


def serve_gemma_scope_2(
    arrays: dict[str, np.ndarray], config: dict | None = None
) -> dict[str, dict[str, bytes]]:
    from safetensors.numpy import save

    # pretrained_saes.yaml: gemma-scope-2-270m-pt-res → google/gemma-scope-2-270m-pt,
    # layer_12_width_16k_l0_medium → resid_post/layer_12_width_16k_l0_medium. Without a
    # config.json SAELens infers the config from the folder name; with one it reads it.
    folder = "resid_post/layer_12_width_16k_l0_medium"
    files = {f"{folder}/params.safetensors": save(arrays)}
    if config is not None:
        files[f"{folder}/config.json"] = json.dumps(config).encode()
    return {"google/gemma-scope-2-270m-pt": files}


GEMMA_SCOPE_2 = "gemma-scope-2-270m-pt-res:layer_12_width_16k_l0_medium"


# the fields SAELens's gemma_3 loader reads from a config.json (its model name normalization:
# "google/" prefixed, "-v3" → "-3", "-pt" dropped for 270m)
SERVED_CONFIG = {
    "architecture": "jump_relu",
    "model_name": "gemma-v3-270m-pt",
    "hf_hook_point_in": "model.layers.12.output",
}


@pytest.mark.parametrize("config", [None, SERVED_CONFIG], ids=["inferred", "config.json"])
def test_a_gemma_scope_2_release_loads_through_a_local_hub(tmp_path, monkeypatch, config):
    from tests.fake_hub import fake_hub

    arrays = gemma_scope_2_files()
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with fake_hub(serve_gemma_scope_2(arrays, config)) as server:
        server.patch(monkeypatch)
        loaded = load_sae(GEMMA_SCOPE_2)
        # SAELens's real path ran: config.json looked up (and read when served), the
        # safetensors header read with two range requests, then the weights downloaded
        asked = [(r["method"], r["path"].rsplit("/", 1)[-1], r["range"]) for r in server.requests]
        assert ("HEAD", "config.json", None) in asked
        read_config = any(a[:2] == ("GET", "config.json") for a in asked)
        assert read_config == (config is not None)
        assert ("GET", "params.safetensors", "bytes=0-7") in asked
        assert any(a[1:] == ("params.safetensors", None) for a in asked if a[0] == "GET")
        header = [a[2] for a in asked if a[2] and a[2] != "bytes=0-7"]
        assert len(header) == 1 and header[0].startswith("bytes=8-")

        # the one-line error when the hub has no such file
        server.files.clear()
        with pytest.raises(ValueError, match=r"could not load .* from the Hugging Face hub"):
            load_sae("gemma-scope-2-270m-pt-res:layer_12_width_16k_l0_small")

    assert (loaded.layer, loaded.site, loaded.hook) == (
        12,
        "resid_post",
        "blocks.12.hook_resid_post",
    )
    assert (loaded.d_in, loaded.d_sae, loaded.architecture) == (640, 16384, "jumprelu")
    assert loaded.model_name == "google/gemma-3-270m"
    for ours, theirs in (("W_enc", "w_enc"), ("W_dec", "w_dec"), ("b_enc", "b_enc")):
        assert torch.equal(getattr(loaded.sae, ours), torch.from_numpy(arrays[theirs])), ours
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 640), dtype=np.float32))
    pre = x @ torch.from_numpy(arrays["w_enc"]) + torch.from_numpy(arrays["b_enc"])
    want = pre.relu() * (pre > torch.from_numpy(arrays["threshold"]))
    assert_close(loaded.encode(x), want, rel=FP32, what="encode")
    assert (want > 0).any() and (want == 0).any()
    # decode: W_dec and b_dec as stored
    recon = want @ torch.from_numpy(arrays["w_dec"]) + torch.from_numpy(arrays["b_dec"])
    assert_close(loaded.decode(want), recon, rel=FP32, what="decode")
