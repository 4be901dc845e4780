"""A site means the same tensor on every architecture, in capture and in both steering paths.

The reference is written here from the Hugging Face modules directly: a second, plain HF copy of
each tiny model, whose block 1 is recomputed by hand from its submodules (`reference_block`), so
nothing in it comes from interp or from the bridge's aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.batching import encode_all, make_batch
from interp.capture import capture
from interp.steering import engine
from interp.steering import interventions as iv
from interp.steering.installers import on_bridge, on_hf
from interp.vectors import DirectionSet
from tests.tiny import ARCHITECTURES, write_tiny_model
from tests.tolerance import FP32, assert_close, relative_error

LAYER = 1
TEXTS = ["The capital of France is Paris.", "Tell me about the ocean and the mountains."]
SITES = ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"]
PARALLEL = {"gpt_neox"}  # attention and MLP both read resid_pre: no resid_mid
Edit = Callable[[str, torch.Tensor], torch.Tensor]


def reference_block(
    arch: str, m: Any, h: torch.Tensor, kw: dict[str, Any], edit: Edit
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Block `m` of `arch` recomputed from its HF submodules, with `edit` applied at each site."""
    rec: dict[str, torch.Tensor] = {}

    def at(site: str, x: torch.Tensor) -> torch.Tensor:
        rec[site] = edit(site, x)
        return rec[site]

    pre = at("resid_pre", h)
    if arch in ("llama", "qwen2"):
        a = at("attn_out", m.self_attn(hidden_states=m.input_layernorm(pre), **kw)[0])
        mid = at("resid_mid", pre + a)
        f = at("mlp_out", m.mlp(m.post_attention_layernorm(mid)))
        return at("resid_post", mid + f), rec
    if arch == "gemma3":  # post-norms on both sublayers
        a = m.self_attn(hidden_states=m.input_layernorm(pre), **kw)[0]
        a = at("attn_out", m.post_attention_layernorm(a))
        mid = at("resid_mid", pre + a)
        f = m.post_feedforward_layernorm(m.mlp(m.pre_feedforward_layernorm(mid)))
        f = at("mlp_out", f)
        return at("resid_post", mid + f), rec
    if arch == "olmo2":  # post-norms only, the MLP reads the residual directly
        a = at("attn_out", m.post_attention_layernorm(m.self_attn(hidden_states=pre, **kw)[0]))
        mid = at("resid_mid", pre + a)
        f = at("mlp_out", m.post_feedforward_layernorm(m.mlp(mid)))
        return at("resid_post", mid + f), rec
    if arch == "granite":  # sublayer outputs scaled by residual_multiplier before the add
        s = m.residual_multiplier
        a = at("attn_out", m.self_attn(hidden_states=m.input_layernorm(pre), **kw)[0] * s)
        mid = at("resid_mid", pre + a)
        f = at("mlp_out", m.mlp(m.post_attention_layernorm(mid)) * s)
        return at("resid_post", mid + f), rec
    if arch == "gpt_neox":  # parallel residual
        a = at("attn_out", m.attention(m.input_layernorm(pre), **kw)[0])
        f = at("mlp_out", m.mlp(m.post_attention_layernorm(pre)))
        return at("resid_post", pre + a + f), rec
    raise AssertionError(arch)


def layers_of(hf: Any) -> Any:
    return hf.gpt_neox.layers if hasattr(hf, "gpt_neox") else hf.model.layers


def reference_run(
    hf: Any, arch: str, ids: torch.Tensor, edit: Edit | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of the plain HF model with block LAYER recomputed by hand (and edited)."""
    rec: dict[str, torch.Tensor] = {}

    def replace(module: Any, args: tuple, kwargs: dict, output: Any) -> torch.Tensor:
        kw = dict(kwargs)
        h = args[0] if args else kw.pop("hidden_states")
        out, seen = reference_block(arch, module, h, kw, edit or (lambda site, x: x))
        if edit is None:  # the hand-written block is the HF block
            real = output[0] if isinstance(output, tuple) else output
            assert_close(out, real, rel=FP32, what=f"{arch} block by hand")
        rec.update(seen)
        return out

    handle = layers_of(hf)[LAYER].register_forward_hook(replace, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = hf(ids, use_cache=False).logits
    finally:
        handle.remove()
    return logits, rec


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name = request.param
    directory = write_tiny_model(tmp_path_factory.mktemp(f"tiny-{name}"), name, chat=False)
    model = interp.load_model(str(directory), device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(
        Path(directory), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return name, model, plain


def test_every_site_is_the_tensor_the_hf_block_computes(arch):
    name, model, plain = arch
    expected = [s for s in SITES if not (name in PARALLEL and s == "resid_mid")]
    assert sorted(model.available_sites(LAYER)) == sorted(expected)
    assert model.post_norms == (name in ("gemma3", "olmo2"))
    acts = capture(model, TEXTS, "all:tokens", layers=[LAYER], sites=expected, progress=False)
    for i, text in enumerate(TEXTS):
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])
        _, ref = reference_run(plain, name, ids)
        # the semantic identities, on the HF side
        if name in PARALLEL:
            torch.testing.assert_close(
                ref["resid_post"], ref["resid_pre"] + ref["attn_out"] + ref["mlp_out"]
            )
        else:
            torch.testing.assert_close(ref["resid_mid"], ref["resid_pre"] + ref["attn_out"])
            torch.testing.assert_close(ref["resid_post"], ref["resid_mid"] + ref["mlp_out"])
        rows = acts.token_index["all:tokens"][0] == i
        for site in expected:
            got = acts.get("all:tokens", site)[rows, 0]
            want = ref[site][0]
            assert got.shape == want.shape, (site, got.shape, want.shape)
            err = float((got - want).norm() / want.norm())
            assert err < 1e-5, f"{name} {site}: relative error {err:.3g} against the HF block"


def test_a_site_the_block_lacks_is_refused_with_the_reason(arch):
    name, model, _ = arch
    if name not in PARALLEL:
        pytest.skip("only parallel-residual blocks lack a site")
    message = r"parallel-residual.*Use one of: resid_pre, resid_post, attn_out, mlp_out"
    with pytest.raises(ValueError, match=message):
        model.hook_name("resid_mid", LAYER)
    with pytest.raises(ValueError, match=message):
        capture(model, TEXTS, "last", layers=[LAYER], sites="resid_mid", progress=False)
    ds = DirectionSet.from_tensor(
        torch.randn(model.n_layers, model.d_model), model, site="resid_mid"
    )
    steerer = engine.Steerer.compile(model, [[iv.add(ds, LAYER, 2.0)]])
    for install in (on_bridge, on_hf):
        with pytest.raises(ValueError, match=message), install(steerer):
            pass


def steered(model: Any, path: str, text: str, ids: torch.Tensor, ds: DirectionSet) -> Any:
    """Logits of `model` with the projection on `ds` set to 3 at `site` of block LAYER, and the
    input block LAYER + 1 reads (read on the original HF module)."""
    rows = encode_all(model, [text])
    assert list(rows[0].ids) == ids[0].tolist()
    batch = make_batch(rows, model.tokenizer.pad_token_id)
    steerer = engine.Steerer.compile(model, [[iv.set_projection(ds, LAYER, 3.0)]])
    next_block = model.bridge.blocks[LAYER + 1]._modules["_original_component"]
    seen: list[torch.Tensor] = []
    grab = next_block.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            if path == "bridge":
                with on_bridge(steerer):
                    steerer.set_view(batch.view(model))
                    logits = model.bridge(batch.input_ids, attention_mask=batch.attention_mask)
            else:
                with on_hf(steerer), model.unwrapped() as hf:
                    steerer.set_view(batch.view(model))
                    logits = hf(
                        batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
                    ).logits
    finally:
        grab.remove()
    return logits, seen[0]


@pytest.mark.parametrize("path", ["bridge", "hf"])
@pytest.mark.parametrize("site", SITES)
def test_a_steering_edit_lands_in_the_tensor_the_next_component_reads(arch, site, path):
    name, model, plain = arch
    if name in PARALLEL and site == "resid_mid":
        pytest.skip("refused: test_a_site_the_block_lacks_is_refused_with_the_reason")
    g = torch.Generator().manual_seed(SITES.index(site))
    ds = DirectionSet.from_tensor(
        torch.randn(model.n_layers, model.d_model, generator=g), model, site=site
    )
    u = ds[LAYER] / ds[LAYER].norm()

    def set_projection(at: str, x: torch.Tensor) -> torch.Tensor:
        return x + (3.0 - x @ u)[..., None] * u if at == site else x

    ids = torch.tensor([model.tokenizer(TEXTS[1])["input_ids"]])
    clean, _ = reference_run(plain, name, ids)
    want, ref = reference_run(plain, name, ids, set_projection)
    assert relative_error(want, clean) > 1e-3, "the edit should change the output"
    logits, next_input = steered(model, path, TEXTS[1], ids, ds)
    # block LAYER + 1 reads the residual the edited block LAYER produced ...
    assert_close(next_input, ref["resid_post"], rel=FP32, what=f"{name} {path} {site} residual")
    # ... and everything downstream follows
    assert_close(logits, want, rel=10 * FP32, what=f"{name} {path} {site} logits")  # 1.7e-6


def test_the_fast_path_refuses_a_hook_it_cannot_reproduce(tiny, monkeypatch):
    """A site resolving to a hook point with no HF module behind it is refused, not moved."""
    ds = DirectionSet.from_tensor(torch.randn(tiny.n_layers, tiny.d_model), tiny, site="attn_out")
    steerer = engine.Steerer.compile(tiny, [[iv.add(ds, LAYER, 2.0)]])
    monkeypatch.setattr(type(tiny), "hook_name", lambda self, site, layer: "blocks.1.attn.hook_z")
    with (
        pytest.raises(ValueError, match=r"'blocks.1.attn.hook_z'.*cannot be steered"),
        on_hf(steerer),
    ):
        pass
