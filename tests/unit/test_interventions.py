import pytest
import torch

from interp.batching import Example, encode_all, make_batch
from interp.positions import ALL, LAST, PROMPT, RESPONSE
from interp.steering import engine
from interp.steering import interventions as iv
from interp.steering.generation import next_token_logprobs
from interp.steering.installers import on_bridge, on_hf
from interp.vectors import DirectionSet

SITES = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]


def vectors(model, site="resid_post", seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return DirectionSet.from_tensor(
        torch.randn(model.n_layers, model.d_model, generator=g) * scale, model, site=site
    )


def test_op_formulas():
    x = torch.randn(2, 3, 8)
    where = torch.tensor([[True, False, True], [False, False, True]])
    v = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    coef = torch.tensor([2.0, -1.0])
    row = torch.ones(2, dtype=torch.bool)
    added = engine.apply_op(engine._Op("add", ALL, row, coef, v), x, where)
    assert torch.allclose(added[0, 0], x[0, 0] + 2 * v[0]) and torch.equal(added[0, 1], x[0, 1])
    ablated = engine.apply_op(engine._Op("ablate", ALL, row, coef, v), x, where)
    assert torch.allclose(ablated[where] @ torch.zeros(8), torch.zeros(3))
    assert torch.allclose((ablated[0, 2] * v[0]).sum(), torch.tensor(0.0), atol=1e-6)
    set_ = engine.apply_op(engine._Op("set", ALL, row, coef, v), x, where)
    assert torch.allclose((set_[1, 2] * v[1]).sum(), torch.tensor(-1.0), atol=1e-5)
    assert torch.allclose((set_[0, 0] * v[0]).sum(), torch.tensor(2.0), atol=1e-5)
    enc, bias, thr = torch.randn(2, 8), torch.tensor([0.5, 0.0]), torch.tensor([0.0, 0.1])
    clamped = engine.apply_op(
        engine._Op("clamp", ALL, row, torch.tensor([3.0, 0.0]), v, enc, bias, thr), x, where
    )
    latent = iv.Latent(enc[0], v[0], 0.5, 0.0)
    assert torch.allclose(
        clamped[0, 2], x[0, 2] + (3.0 - latent.activation(x[0, 2])) * v[0], atol=1e-5
    )
    assert torch.equal(clamped[0, 1], x[0, 1])


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])
@pytest.mark.parametrize("site", SITES)
def test_bridge_and_fast_path_apply_the_same_edit(model_fixture, site, request):
    """The two installers (bridge hook points, plain HF modules) give identical logits."""
    model = request.getfixturevalue(model_fixture)
    ds = vectors(model, site)
    plan = [
        iv.add(ds, [1, 2], 3.0, PROMPT),
        iv.ablate(ds, 2, ALL),
        iv.set_projection(ds, 1.5, 3, LAST),
    ]
    rows = encode_all(model, [Example("Tell me about the ocean", " It is deep."), "Hi there"])
    batch = make_batch(rows, model.tokenizer.pad_token_id, "left", example_ids=[0, 1])
    steer = engine.Steerer.compile(model, [plan, plan[:1]])
    kwargs = dict(
        attention_mask=batch.attention_mask, position_ids=batch.position_ids, use_cache=False
    )
    with torch.no_grad():
        clean = model.bridge(batch.input_ids, **kwargs)
        steer.set_view(batch.view(model))
        with on_bridge(steer):
            via_bridge = model.bridge(batch.input_ids, **kwargs)
        with on_hf(steer), model.unwrapped() as hf:
            via_hf = hf(batch.input_ids, **kwargs).logits
        after = model.bridge(batch.input_ids, **kwargs)
    real = batch.attention_mask.bool()
    assert not torch.allclose(clean[real], via_bridge[real], atol=1e-3)  # the edit did something
    torch.testing.assert_close(via_hf[real], via_bridge[real], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after, clean)  # nothing left behind


def test_scale_modes(tiny):
    ds = vectors(tiny)
    assert torch.allclose(iv.add(ds, 1, 2.0).vector(1), ds[1])
    assert torch.allclose(iv.add(ds, 1, 2.0, scale="unit").vector(1).norm(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="measure_resid_norm"):
        iv.add(ds, 1, 2.0, scale="resid_norm").vector(1)
    measured = iv.measure_resid_norm(
        tiny, ["Tell me about the ocean", "Why did the chicken cross"], ds
    )
    norm = measured.stat("resid_norm", 1)
    assert norm > 0
    assert torch.allclose(
        iv.add(measured, 1, 0.5, scale="resid_norm").vector(1).norm(), torch.tensor(norm)
    )


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])
def test_resid_mid_edits_reach_the_residual(model_fixture, request):
    """A resid_mid edit shows up in resid_mid itself; for `add` it equals adding at attn_out."""
    from interp.hooks import hooked

    model = request.getfixturevalue(model_fixture)
    mid, attn = vectors(model, "resid_mid"), vectors(model, "attn_out")
    rows = encode_all(model, [Example("Tell me about the ocean", " It is deep.")])
    batch = make_batch(rows, model.tokenizer.pad_token_id)
    seen: list[torch.Tensor] = []
    grab = [(model.hook_name("resid_mid", 2), lambda x, hook: seen.append(x.clone()))]

    def run(plan):
        steer = engine.Steerer.compile(model, [plan])
        steer.set_view(batch.view(model))
        with torch.no_grad(), on_bridge(steer), hooked(model, grab):
            return model.bridge(batch.input_ids)

    clean = run([])
    via_mid = run([iv.add(mid, 2, 2.0, RESPONSE)])
    via_attn = run([iv.add(attn, 2, 2.0, RESPONSE)])
    assert not torch.allclose(clean, via_mid, atol=1e-3)
    torch.testing.assert_close(via_mid, via_attn, rtol=1e-4, atol=1e-4)
    p = rows[0].prompt_len
    torch.testing.assert_close(seen[1][0, p:], seen[0][0, p:] + 2.0 * mid[2], rtol=1e-4, atol=1e-4)
    assert torch.equal(seen[1][0, :p], seen[0][0, :p])
    run([iv.ablate(mid, 2, RESPONSE)])
    u = mid[2] / mid[2].norm()
    assert torch.allclose(seen[-1][0, p:] @ u, torch.zeros(len(rows[0]) - p), atol=1e-3)


def test_refusals(tiny):
    from interp.vectors import VectorMismatch

    wrong = iv.Latent(torch.randn(32), torch.randn(32), 0.0)
    with pytest.raises(VectorMismatch, match="d_model 64"):
        next_token_logprobs(tiny, ["Hi"], iv.clamp(wrong, 1, 1.0))
    nan = iv.Latent(torch.full((64,), float("nan")), torch.randn(64), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        next_token_logprobs(tiny, ["Hi"], iv.clamp(nan, 1, 1.0))
    a, b = (
        iv.Latent(torch.ones(64), torch.ones(64), 0.0),
        iv.Latent(torch.ones(64), -torch.ones(64), 0.0),
    )
    assert iv.clamp(a, 1, 1.0).describe() != iv.clamp(b, 1, 1.0).describe()
    with pytest.raises(KeyError, match="covers layers"):
        iv.add(vectors(tiny).at([1]), 2)
    with pytest.raises(ValueError, match="one list per prompt"):
        engine.per_row([[iv.add(vectors(tiny), 1)]], 2)
    with pytest.raises(ValueError, match="row 1 of the interventions"):
        engine.per_row([[iv.add(vectors(tiny), 1)], ["nope"]], 2)


def test_vectors_from_another_model_need_an_override(tiny, tiny_base):
    ds = vectors(tiny)
    from interp.vectors import VectorMismatch

    with pytest.raises(VectorMismatch, match="allow_other_model"):
        next_token_logprobs(tiny_base, ["Hi"], iv.add(ds, 1, 1.0))
    out = next_token_logprobs(tiny_base, ["Hi"], iv.add(ds, 1, 1.0), allow_other_model=True)
    assert out.shape == (1, len(tiny_base.tokenizer))


def test_clamp_through_the_engine(tiny):
    """x' = x + (t − f(x))·d at the clamped positions, nothing elsewhere."""
    from interp.hooks import hooked

    g = torch.Generator().manual_seed(3)
    latent = iv.Latent(torch.randn(64, generator=g), torch.randn(64, generator=g), 0.2, 0.1)
    rows = encode_all(tiny, [Example("Tell me about the ocean", " Yes")])
    batch = make_batch(rows, tiny.tokenizer.pad_token_id)
    steer = engine.Steerer.compile(tiny, [[iv.clamp(latent, 1, 5.0, positions=RESPONSE)]])
    seen = []
    grab = [(tiny.hook_name("resid_post", 1), lambda x, hook: seen.append(x.clone()))]
    with torch.no_grad():
        with hooked(tiny, grab):
            tiny.bridge(batch.input_ids)
        steer.set_view(batch.view(tiny))
        with on_bridge(steer), hooked(tiny, grab):  # registered after: sees the edited value
            tiny.bridge(batch.input_ids)
    clean, edited = seen
    p = rows[0].prompt_len
    expected = clean[0, p:] + (5.0 - latent.activation(clean[0, p:]))[:, None] * latent.decoder
    torch.testing.assert_close(edited[0, p:], expected)
    torch.testing.assert_close(edited[0, :p], clean[0, :p])


@pytest.mark.parametrize("kind", ["jumprelu", "standard"])
def test_latent_from_a_saelens_sae_matches_its_encoder(kind):
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    torch.manual_seed(0)
    sae = (
        JumpReLUSAE(JumpReLUSAEConfig(d_in=64, d_sae=16))
        if kind == "jumprelu"
        else StandardSAE(StandardSAEConfig(d_in=64, d_sae=16))
    )
    with torch.no_grad():
        for param in sae.parameters():
            param.normal_(0, 0.3)
        if kind == "jumprelu":
            sae.threshold.abs_()
    x = torch.randn(5, 64)
    with torch.no_grad():
        reference = sae.encode(x)
    assert 0 < (reference > 0).float().mean() < 1  # some latents on, some off
    for j in range(16):
        latent = iv.Latent.from_sae(sae, j)
        torch.testing.assert_close(latent.activation(x), reference[:, j], rtol=1e-5, atol=1e-5)
        assert torch.equal(latent.decoder, sae.W_dec[j].detach())
