import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from interp.batching import Example, encode_all, make_batch
from interp.positions import ALL, LAST, PROMPT, RESPONSE
from interp.steering import engine
from interp.steering import interventions as iv
from interp.steering.generation import next_token_logprobs
from interp.steering.installers import on_bridge, on_hf
from interp.vectors import DirectionSet
from tests.tolerance import BF16, FP32, FP32_OP, assert_close, relative_error

SITES = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]


def vectors(model, site="resid_post", seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return DirectionSet.from_tensor(
        torch.randn(model.n_layers, model.d_model, generator=g) * scale, model, site=site
    )


def make_op(kind, coef, vec, enc=None, bias=None, threshold=None):
    """An engine op of one kind for every row, built by hand (no Steerer)."""
    n = len(coef)
    reads = torch.full((n,), kind != "add")
    return engine._Op(
        site="resid_post",
        layer=0,
        row=torch.ones(n, dtype=torch.bool),
        selectors=((ALL, torch.ones(n, dtype=torch.bool)),),
        reads=reads,
        gated=torch.full((n,), kind == "clamp"),
        coef=coef,
        vec=vec,
        enc=(enc if kind == "clamp" else vec) if kind != "add" else None,
        bias=torch.zeros(n) if bias is None else bias,
        threshold=torch.zeros(n) if threshold is None else threshold,
        sources=(None,) * n,
    )


def test_op_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, generator=g)
    where = torch.tensor([[True, False, True], [False, False, True]])
    v = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=-1)
    coef = torch.tensor([2.0, -1.0])

    def rows_match(edited, expected):
        for b, p in where.nonzero().tolist():
            torch.testing.assert_close(edited[b, p], expected(b, p), rtol=1e-6, atol=1e-6)
        assert torch.equal(edited[~where], x[~where])  # untouched positions, bit for bit

    added = engine.apply_op(make_op("add", coef, v), x, where)
    rows_match(added, lambda b, p: x[b, p] + coef[b] * v[b])
    # ablation: each row's own direction is projected out (x - (x·v̂)v̂), and only that
    ablated = engine.apply_op(make_op("ablate", torch.zeros(2), v), x, where)
    rows_match(ablated, lambda b, p: x[b, p] - (x[b, p] @ v[b]) * v[b])
    for b, p in where.nonzero().tolist():
        assert abs(float(ablated[b, p] @ v[b])) < 1e-6 < abs(float(x[b, p] @ v[b]))
    set_ = engine.apply_op(make_op("set", coef, v), x, where)
    rows_match(set_, lambda b, p: x[b, p] + (coef[b] - x[b, p] @ v[b]) * v[b])
    assert abs(float(set_[1, 2] @ v[1]) + 1.0) < 1e-5 and abs(float(set_[0, 0] @ v[0]) - 2) < 1e-5
    enc, bias, thr = (
        torch.randn(2, 8, generator=g),
        torch.tensor([0.5, 0.0]),
        torch.tensor([0.0, 9.0]),
    )
    clamped = engine.apply_op(
        make_op("clamp", torch.tensor([3.0, 1.0]), v, enc, bias, thr), x, where
    )

    def latent_rule(b, p):
        pre = float(x[b, p] @ enc[b]) + float(bias[b])
        act = pre if pre > float(thr[b]) and pre > 0 else 0.0  # JumpReLU, written out
        return x[b, p] + ([3.0, 1.0][b] - act) * v[b]

    rows_match(clamped, latent_rule)


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])
@pytest.mark.parametrize("site", SITES)
def test_bridge_and_fast_path_apply_the_same_edit(model_fixture, site, request):
    """The two installers (bridge hook points, plain HF modules) give identical logits."""
    model = request.getfixturevalue(model_fixture)
    ds = vectors(model, site)
    plan = [
        iv.add(ds, [1, 2], 3.0, positions=PROMPT),
        iv.ablate(ds, 2, positions=ALL),
        iv.set_projection(ds, 3, 1.5, positions=LAST),
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
    assert relative_error(via_bridge[real], clean[real]) > 1e-3  # the edit did something
    # other attention kernels on the two paths (measured 1.6e-6): 10 x FP32 for margin; a
    # misplaced or repeated edit moves the logits by 1e-2 or more
    assert_close(via_hf[real], via_bridge[real], rel=10 * FP32, what="plain HF against the bridge")
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
    via_mid = run([iv.add(mid, 2, 2.0, positions=RESPONSE)])
    via_attn = run([iv.add(attn, 2, 2.0, positions=RESPONSE)])
    assert relative_error(via_mid, clean) > 1e-3
    assert_close(via_mid, via_attn, rel=FP32, what="resid_mid add against attn_out add")
    p = rows[0].prompt_len
    assert_close(seen[1][0, p:], seen[0][0, p:] + 2.0 * mid[2], rel=FP32_OP, what="resid_mid")
    assert torch.equal(seen[1][0, :p], seen[0][0, :p])
    run([iv.ablate(mid, 2, positions=RESPONSE)])
    u = mid[2] / mid[2].norm()
    left = float((seen[-1][0, p:] @ u).abs().max())  # none, to rounding of the residual's size
    assert left <= FP32_OP * float(seen[-1][0, p:].norm(dim=-1).max()), left


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
    assert_close(edited[0, p:], expected, rel=FP32_OP, what="clamped positions")
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
    latents = [iv.Latent.from_sae(sae, j) for j in range(16)]
    # all latents at once: a latent's rounding scales with the encoder's inputs, not its value
    got = torch.stack([latent.activation(x) for latent in latents], dim=-1)
    assert_close(got, reference, rel=FP32, what="latent activations")
    for j, latent in enumerate(latents):
        assert torch.equal(latent.decoder, sae.W_dec[j].detach())


class _Made(TorchDispatchMode):
    """Records the dtype and size of every tensor an operation makes."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, torch.dtype, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.made.append((str(func), t.dtype, t.numel()))
        return out


@pytest.mark.parametrize("kind", ["add", "ablate", "set", "clamp"])
def test_edits_stay_in_the_activation_dtype_at_the_selected_positions_only(kind):
    """bf16 in, bf16 out; unselected positions bit for bit (even inf/NaN there); no full-size
    float32 copy of the activation; selected positions computed in float32 then rounded."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 64, 32, generator=g) * 4).to(torch.bfloat16)
    x[0, 5, 3], x[1, 7, 0], x[2, 9, 1] = float("inf"), float("-inf"), float("nan")
    where = torch.zeros(4, 64, dtype=torch.bool)
    where[0, 2], where[1, 63], where[3, 10] = True, True, True
    v = torch.nn.functional.normalize(torch.randn(4, 32, generator=g), dim=-1)
    coef, enc = torch.tensor([2.0, -1.0, 0.5, 3.0]), torch.randn(4, 32, generator=g)
    coef = torch.zeros(4) if kind == "ablate" else coef
    with _Made() as made:
        out = engine.apply_op(make_op(kind, coef, v, enc), x, where)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[~where].view(torch.int16), x[~where].view(torch.int16))
    biggest = max(n for _, dtype, n in made.made if dtype == torch.float32)
    assert biggest < x.numel() // 8, made.made  # float32 work is selected positions only
    for b, p in where.nonzero().tolist():
        h = x[b, p].float()
        if kind == "add":
            expected = h + coef[b] * v[b]
        elif kind == "clamp":
            pre = float(h @ enc[b])
            expected = h + (float(coef[b]) - max(pre, 0.0)) * v[b]
        else:
            target = float(coef[b]) if kind == "set" else 0.0
            expected = h + (target - float(h @ v[b])) * v[b]
        if kind == "add":  # the same float32 operations, so the same bits
            assert torch.equal(out[b, p], expected.to(torch.bfloat16))
        else:  # the dot product's summation order may differ: one bf16 rounding step
            assert_close(out[b, p], expected.to(torch.bfloat16), rel=BF16, what=f"{kind} {b} {p}")


def test_op_tensors_and_masks_follow_the_activation_device(tiny):
    """Compiled ops live on the CPU and are moved, once per device, to the activation's device.

    Only the CPU is here, so the move is checked on the `meta` device; a model split over GPUs
    (device_map) is not exercised by this suite.
    """
    ds = vectors(tiny)
    steer = engine.Steerer.compile(
        tiny, [[iv.add(ds, 1, 2.0, positions=LAST)], [iv.ablate(ds, 1, positions=PROMPT)]]
    )
    (op,) = steer.ops[("resid_post", 1)]
    meta = torch.device("meta")
    moved = op.to(meta)
    tensors = [moved.row, moved.reads, moved.gated, moved.coef, moved.vec, moved.enc]
    tensors += [moved.bias, moved.threshold] + [rows for _, rows in moved.selectors]
    assert all(t is not None and t.device.type == "meta" for t in tensors)
    assert op.to(meta) is moved and op.to(torch.device("cpu")) is op  # cached per device
    rows = encode_all(tiny, [Example("Tell me about the ocean", " It is deep."), "Hi"])
    steer.set_view(make_batch(rows, tiny.tokenizer.pad_token_id, "left").view(tiny))
    assert steer.view is not None
    assert steer._where(moved, steer.view).device.type == "meta"
    assert {device for _, device in steer._masks} == {meta}


def test_non_finite_coefficients_are_refused(tiny):
    ds = vectors(tiny)
    latent = iv.Latent(torch.ones(64), torch.ones(64), 0.0)
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match=f"coef must be a finite number, got {bad}"):
            iv.add(ds, 1, bad)
        with pytest.raises(ValueError, match=f"value must be a finite number, got {bad}"):
            iv.set_projection(ds, 1, bad)
        with pytest.raises(ValueError, match=f"value must be a finite number, got {bad}"):
            iv.clamp(latent, 1, bad)


def test_factories_take_what_where_how_much(tiny):
    """One argument order: (directions or latent, layers, coef or value); the rest by keyword."""
    ds = vectors(tiny)
    latent = iv.Latent(torch.ones(64), torch.ones(64), 0.0)
    for made, kind in (
        (iv.add(ds, 2, 1.5), "add"),
        (iv.set_projection(ds, 2, 1.5), "set"),
        (iv.clamp(latent, 2, 1.5), "clamp"),
    ):
        assert (made.kind, made.layers, made.coef) == (kind, (2,), 1.5)
    assert iv.ablate(ds, 2).layers == (2,)
    assert iv.set_projection(ds, None, 1.0).layers == ds.layers
    assert iv.add(ds, [2, 1], 1.0, positions=LAST, label="x").positions == LAST
    with pytest.raises(TypeError):
        iv.add(ds, 1, 2.0, LAST)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        iv.set_projection(ds, 1.5, 2)  # type: ignore[arg-type]  # the old (value, layers) order


def test_coefficients_past_the_dtype_bound_are_refused_up_front(tiny):
    """unit-scaled 1e25 and 1e38 used to give uniform logits and empty texts with no error:
    the edit itself stays finite, but squaring it in the next RMSNorm overflows."""
    import dataclasses
    import math

    from interp.steering.generation import generate

    limit = math.sqrt(torch.finfo(torch.float32).max / 64)  # squared norm fits in float32
    assert iv.magnitude_limit(torch.float32, 64) == pytest.approx(limit)
    assert iv.magnitude_limit(torch.float16, 64) == 65504.0  # the edit itself must fit
    ds = vectors(tiny)
    latent = iv.Latent(torch.ones(64), torch.full((64,), 0.125), 0.0)  # decoder norm 1
    for coef in (1e25, 1e38):
        with pytest.raises(ValueError, match=r"add intervention at resid_post layers \[1\]"):
            iv.add(ds, 1, coef, scale="unit")
        with pytest.raises(ValueError, match="give a smaller value"):
            iv.set_projection(ds, 1, -coef)
        with pytest.raises(ValueError, match="give a smaller value"):
            iv.clamp(latent, 1, coef)
        # built by hand, past the factory: refused when compiled, on both paths
        sneaked = dataclasses.replace(iv.add(ds, 1, 1.0, scale="unit"), coef=coef)
        with pytest.raises(ValueError, match=r"writes \|coef\| x \|\|vector\|\| = 1e\+(25|38)"):
            next_token_logprobs(tiny, ["Hi"], sneaked)
        with pytest.raises(ValueError, match=r"over the 2.31e\+18 that float32 activations"):
            generate(tiny, ["Hi"], sneaked, max_new_tokens=2)
    raw = ds[1].norm().item()  # raw scale: the bound is on coef x the vector's own norm
    with pytest.raises(ValueError, match="smaller coef"):
        iv.add(ds, 1, 1.01 * limit / raw)
    fine = iv.add(ds, 1, 0.99 * limit / raw)
    assert torch.isfinite(next_token_logprobs(tiny, ["Hi"], fine)).all()


def test_non_finite_logits_under_interventions_name_them(tiny):
    """What gets past the bound and still breaks the forward is refused, not sampled from."""
    from interp.steering.generation import generate

    edit = iv.add(vectors(tiny), 1, 0.5, label="mild")
    head = tiny.hf.lm_head._modules["_original_component"]
    broken = head.register_forward_hook(lambda module, args, out: torch.full_like(out, math.nan))
    message = r"logits of prompt 1 are NaN/inf under its interventions \(add 'mild' at resid_post"
    try:
        with pytest.raises(FloatingPointError, match=message):
            generate(tiny, ["Hi", "Tell me about the ocean"], [[], [edit]], max_new_tokens=2)
        with pytest.raises(FloatingPointError, match=message):
            next_token_logprobs(tiny, ["Hi", "Tell me about the ocean"], [[], [edit]])
    finally:
        broken.remove()


def test_latent_bias_and_threshold_are_checked_by_name(tiny):
    """A NaN bias used to be reported as the coefficient's fault."""
    ok = torch.ones(64)
    for field, latent in (
        ("bias", iv.Latent(ok, ok, math.nan)),
        ("threshold", iv.Latent(ok, ok, 0.0, math.inf)),
    ):
        with pytest.raises(ValueError, match=f"latent {field} is (nan|inf); it must be a finite"):
            next_token_logprobs(tiny, ["Hi"], iv.clamp(latent, 1, 1.0))


def test_factory_arguments_are_named_and_negative_layers_count_from_the_end(tiny, monkeypatch):
    import jaxtyping

    ds = vectors(tiny)
    monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)  # as users run it
    with pytest.raises(TypeError, match=r"coef must be a number, got '3' \(str\)"):
        iv.add(ds, 1, "3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"coef must be a number, got True \(bool\)"):
        iv.add(ds, 1, True)
    with pytest.raises(TypeError, match=r"value must be a number, got None"):
        iv.set_projection(ds, 1, None)  # type: ignore[arg-type]
    # -1 is the last block of the 4-layer model the set was made on (it used to be a KeyError)
    last = iv.add(ds, -1, 2.0)
    assert last.layers == (3,) and last.describe() == iv.add(ds, 3, 2.0).describe()
    assert iv.ablate(ds, [-1, 0]).layers == (0, 3)
    assert torch.equal(
        next_token_logprobs(tiny, ["Hi"], last),
        next_token_logprobs(tiny, ["Hi"], iv.add(ds, 3, 2.0)),
    )
    with pytest.raises(KeyError, match=r"no vector for layer 3; this set covers layers \[1, 2\]"):
        iv.add(ds.at([1, 2]), -1, 1.0)
    with pytest.raises(ValueError, match="layer -5 is out of range for the 4-layer model"):
        iv.add(ds, -5, 1.0)
    # clamp resolves its negative layer against the model: the same block, the same logits
    latent = iv.Latent(torch.ones(64), torch.ones(64), 0.0)
    assert torch.equal(
        next_token_logprobs(tiny, ["Hi"], iv.clamp(latent, -1, 1.0)),
        next_token_logprobs(tiny, ["Hi"], iv.clamp(latent, 3, 1.0)),
    )
