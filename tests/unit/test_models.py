from pathlib import Path

import pytest
import torch

import interp
from interp.models import ModelNotFound
from tests.tolerance import FP32, assert_close


def test_local_directory_loads_through_the_bridge(tiny, tiny_dir):
    assert tiny.n_layers == 4 and tiny.d_model == 64
    assert tiny.source == str(tiny_dir)
    assert type(tiny.bridge).__name__ == "TransformerBridge"
    # raw weights: the bridge holds the very tensors saved in the directory
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert torch.equal(
        ref.model.layers[2].mlp.down_proj.weight,
        tiny.hf.model.layers[2].mlp._original_component.down_proj.weight,
    )


def test_layers_and_errors(tiny):
    assert tiny.layers("all") == [0, 1, 2, 3]
    assert tiny.layers("1-2") == [1, 2]
    assert tiny.layers("0,3") == [0, 3]
    assert tiny.layers(-1) == [3]
    assert tiny.layers([2, 0, 2]) == [0, 2]
    with pytest.raises(ValueError, match=r"layer 4 is out of range for .* \(4 layers: 0–3\)"):
        tiny.layers("4")
    with pytest.raises(ValueError, match="cannot parse layers"):
        tiny.layers("first")
    with pytest.raises(ValueError, match="unknown site"):
        tiny.hook_name("residual", 0)


def test_post_norm_architecture_maps_attn_and_mlp_out(tiny_base):
    assert tiny_base.post_norms
    assert tiny_base.hook_name("attn_out", 1) == "blocks.1.ln1_post.hook_out"
    assert tiny_base.hook_name("mlp_out", 1) == "blocks.1.ln2_post.hook_out"


def test_chat_formatting(tiny, tiny_base):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tiny.format_chat(chat) == "<|system|>Be brief.<|end|>\n<|user|>Hi<|end|>\n<|assistant|>"
    # base model without a template: the plain fallback
    assert tiny_base.format_chat(chat) == "Be brief.\n\nUser: Hi\n\nAssistant:"
    assert tiny_base.format_chat(chat, add_generation_prompt=False) == "Be brief.\n\nUser: Hi\n\n"
    with pytest.raises(ValueError, match="role 'bot'"):
        tiny.format_chat([{"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match="at least one message"):
        tiny.format_chat([])


def test_unknown_specs_list_the_embedded_aliases(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec in ("no-such-model", "someone/unknown-model", str(tmp_path / "missing")):
        with pytest.raises(ModelNotFound, match=r"smollm2-135m-instruct, gemma-3-270m"):
            interp.load_model(spec)
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        interp.load_model(str(tmp_path))


def test_hub_id_of_an_embedded_model_points_to_its_alias(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="use 'smollm2-135m-instruct'"):
        interp.load_model("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_unwrapped_is_the_plain_model_and_is_restored(tiny, tiny_dir):
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    ids = torch.tensor([[5, 17, 40, 99, 3]])
    wrapped_block = tiny.hf.model.layers[0]
    with torch.no_grad(), tiny.unwrapped() as hf:
        assert type(hf.model.layers[0]).__name__ == "LlamaDecoderLayer"
        assert type(hf.model.layers[0].self_attn).__name__ == "LlamaAttention"
        assert_close(hf(ids).logits, ref(ids).logits, rel=FP32, what="logits")
    assert tiny.hf.model.layers[0] is wrapped_block
    assert tiny.hf.config._attn_implementation == "eager"
    with pytest.raises(RuntimeError, match="boom"), tiny.unwrapped():
        raise RuntimeError("boom")
    assert tiny.hf.model.layers[0] is wrapped_block  # restored after an exception too


def test_fingerprint_tracks_weights(tiny_dir, tmp_path):
    a = interp.load_model(str(tiny_dir))
    b = interp.load_model(str(tiny_dir))
    assert a.fingerprint() == b.fingerprint()
    from tests.tiny import write_tiny_model

    other = interp.load_model(str(write_tiny_model(Path(tmp_path) / "other", seed=1)))
    assert other.fingerprint() != a.fingerprint()


def test_directory_with_only_pickled_weights_is_refused(tiny_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_dir.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, pickled / f.name)
    torch.save(load_file(tiny_dir / "model.safetensors"), pickled / "pytorch_model.bin")
    with pytest.raises(ModelNotFound, match=r"only pickled weights \(pytorch_model\.bin\).*"):
        interp.load_model(str(pickled), device="cpu")
    (pickled / "pytorch_model.bin").unlink()
    with pytest.raises(ModelNotFound, match=r"no \*\.safetensors weights"):
        interp.load_model(str(pickled), device="cpu")


def test_bad_devices_fail_before_loading(tiny_dir):
    with pytest.raises(ValueError, match=r"unknown device 'bogus'; use 'cpu', 'cuda'"):
        interp.load_model(str(tiny_dir), device="bogus")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(ValueError, match=rf"device 'cuda:{n}' does not exist"):
            interp.load_model(str(tiny_dir), device=f"cuda:{n}")
    else:
        with pytest.raises(ValueError, match=r"device 'cuda' needs CUDA, but .*use device 'cpu'"):
            interp.load_model(str(tiny_dir), device="cuda")


def test_fingerprint_is_the_weights_and_architecture_not_the_load(tiny_dir, tmp_path, monkeypatch):
    """float32 and bfloat16 loads of one checkpoint share the fingerprint (a vector made on one
    fits the other); the transformers version and run-time switches do not enter it; other
    weights or another architecture hyperparameter do."""
    import json
    import shutil

    import transformers.configuration_utils as configuration_utils

    from interp.steering import interventions as iv
    from interp.steering.generation import next_token_logprobs
    from interp.vectors import DirectionSet
    from tests.tiny import write_tiny_model

    fp32 = interp.load_model(str(tiny_dir), device="cpu", dtype="float32")
    bf16 = interp.load_model(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16 and fp32.fingerprint() == bf16.fingerprint()
    ds = DirectionSet.from_tensor(torch.randn(4, 64), fp32)
    steered = next_token_logprobs(bf16, ["Hi"], iv.add(ds, 1, 2.0))  # no VectorMismatch
    assert steered.shape == (1, len(bf16.tokenizer))

    # a new transformers release, another attention kernel, use_cache: the same model
    monkeypatch.setattr(configuration_utils, "__version__", "99.0.0")
    assert bf16.hf.config.to_dict()["transformers_version"] == "99.0.0"
    bf16.hf.config.use_cache = not bf16.hf.config.use_cache
    bf16.hf.config._attn_implementation = "sdpa"
    bf16._fingerprint = None  # recompute from scratch
    assert bf16.fingerprint() == fp32.fingerprint()

    other = write_tiny_model(tmp_path / "other", seed=1)  # other weights
    assert interp.load_model(str(other), device="cpu").fingerprint() != fp32.fingerprint()
    changed = tmp_path / "eps"  # same weights, another normalisation epsilon
    shutil.copytree(tiny_dir, changed)
    config = json.loads((changed / "config.json").read_text())
    config["rms_norm_eps"] = config["rms_norm_eps"] * 10
    (changed / "config.json").write_text(json.dumps(config))
    assert interp.load_model(str(changed), device="cpu").fingerprint() != fp32.fingerprint()


def test_layers_take_integer_scalars_and_refuse_floats(tiny, monkeypatch):
    import jaxtyping
    import numpy as np

    from interp.capture import capture

    assert tiny.layers(np.int64(2)) == [2] and tiny.layers(torch.tensor(-1)) == [3]
    assert tiny.layers(np.array([3, 1])) == [1, 3]
    monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)  # as users run it
    # used to fail with "'float' object is not iterable"
    with pytest.raises(TypeError, match=r"whole block index \(int\), got 2.0 \(float\)"):
        capture(tiny, ["Hi"], "last", layers=2.0, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got True \(bool\)"):
        tiny.layers(True)
