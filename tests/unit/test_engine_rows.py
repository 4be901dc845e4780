"""A batched row equals the same row run alone, for every mix of interventions (issue 7, item 2).

Three levels: the engine on random activations (exact, many random plans), the model through
`next_token_logprobs` (random plans; float tolerance, see below) checked against a plain-HF-hook
reference written here, and greedy generation of a 24-configuration sweep against 24 sequential
plain-HF `generate` calls with a hook (token for token).

Through the model, a batched row and the row alone run the model's matmuls at different batch
shapes, and which kernel runs (so how it rounds) depends on the shape and the CPU: on an AMX Xeon
they differed by 1.9e-5 in log-probs. So those comparisons are bounded relative to the
log-probs' magnitude (`tests.tolerance`); the order bug they guard against moved them by ~0.1.
"""

import random
from typing import Literal

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp.steering.generation as gen_module
from interp.batching import Example, TokenView, encode_all, make_batch
from interp.positions import ALL, FIRST, LAST, LAST_PROMPT, PROMPT, RESPONSE, Index
from interp.steering import engine
from interp.steering import interventions as iv
from interp.steering.engine import Steerer
from interp.steering.generation import generate, next_token_logprobs
from interp.vectors import DirectionSet
from tests.tolerance import FP32, assert_close, relative_error

TEXTS = [
    Example("Tell me about the ocean and the mountains.", " It is deep."),
    Example("Why did the chicken", " cross the road?"),
    Example("Hi", " Yes"),
    Example("The capital of France is", " Paris."),
]
SELECTORS = [ALL, PROMPT, RESPONSE, LAST, LAST_PROMPT, FIRST, Index(1), RESPONSE | LAST_PROMPT]
LAYERS = (1, 2)


def directions(model, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    vecs = torch.randn(model.n_layers, model.d_model, generator=g) * scale
    return DirectionSet.from_tensor(vecs, model, site="resid_post")


def latent(model, seed):
    g = torch.Generator().manual_seed(seed)
    d = model.d_model
    return iv.Latent(
        torch.randn(d, generator=g) * 0.3, torch.randn(d, generator=g), 0.2, threshold=0.1
    )


def random_intervention(rng, sets, latents):
    kind = rng.choice(["add", "ablate", "set", "clamp"])
    pos = rng.choice(SELECTORS)
    if kind == "clamp":
        return iv.clamp(rng.choice(latents), rng.choice(LAYERS), rng.uniform(-3, 3), positions=pos)
    ds = rng.choice(sets)
    layers = rng.choice([[1], [2], [1, 2]])
    if kind == "add":
        return iv.add(ds, layers, rng.uniform(-3, 3), positions=pos)
    if kind == "ablate":
        return iv.ablate(ds, layers, positions=pos)
    return iv.set_projection(ds, layers, rng.uniform(-3, 3), positions=pos)


def reference_edit(x, plan, layer, mask):
    """One row's edits at resid_post of `layer`, in the row's order, written out per formula."""
    x = x.clone()
    for item in plan:
        if layer not in item.layers:
            continue
        where = item.positions.mask(mask)[0]
        for p in where.nonzero().flatten().tolist():
            h = x[p]
            if item.kind == "clamp":
                pre = float(h @ item.latent.encoder) + item.latent.bias
                act = pre if pre > max(item.latent.threshold, 0.0) else 0.0
                x[p] = h + (item.coef - act) * item.latent.decoder
                continue
            v = item.directions[layer]
            if item.kind == "add":
                x[p] = h + item.coef * v
            else:
                u = v / v.norm()
                target = item.coef if item.kind == "set" else 0.0
                x[p] = h + (target - float(h @ u)) * u
    return x


def row_view(view, r):
    """Row r of a batched view, alone (same padding, so positions line up)."""
    return TokenView(
        view.input_ids[r : r + 1], view.index[r : r + 1], [view.rows[r]], [r], view.model
    )


def test_each_row_keeps_its_own_order_at_one_hook_exactly(tiny):
    """Random plans (add / ablate / set / clamp, shared and different layers, random positions):
    every batched row equals the row run alone bit for bit, and a per-formula reference."""
    rng = random.Random(0)
    sets = [directions(tiny, 1), directions(tiny, 2)]
    latents = [latent(tiny, 3), latent(tiny, 4)]
    rows = encode_all(tiny, TEXTS)
    for trial in range(60):
        n = rng.randint(2, 5)
        picks = [rng.randrange(len(rows)) for _ in range(n)]
        plans = [
            [random_intervention(rng, sets, latents) for _ in range(rng.randint(0, 4))]
            for _ in range(n)
        ]
        side: Literal["left", "right"] = rng.choice(["left", "right"])
        batch = make_batch([rows[i] for i in picks], tiny.tokenizer.pad_token_id, side)
        view = batch.view(tiny)
        g = torch.Generator().manual_seed(trial)
        x = torch.randn(n, view.index.shape[1], tiny.d_model, generator=g) * 2
        steer = engine.Steerer.compile(tiny, plans)
        steer.set_view(view)
        for layer in LAYERS:
            out = steer.apply("resid_post", layer, x)
            for r in range(n):
                alone = engine.Steerer.compile(tiny, [plans[r]])
                alone.set_view(row_view(view, r))
                single = alone.apply("resid_post", layer, x[r : r + 1])[0]
                assert torch.equal(out[r], single), (trial, r, layer, plans[r])
                expected = reference_edit(x[r], plans[r], layer, row_view(view, r))
                assert_close(out[r], expected, rel=FP32, what=f"trial {trial} row {r}")


def test_the_reported_case_set_then_add(tiny):
    """[[set(v)], [add(w), set(v)]]: row 1 must run add then set, as it does alone."""
    v, w = directions(tiny, 1), directions(tiny, 2)
    s, a = iv.set_projection(v, 1, 2.0), iv.add(w, 1, 2.0)
    prompt = "Tell me about the ocean"
    both = next_token_logprobs(tiny, [prompt, prompt], [[s], [a, s]])
    alone = next_token_logprobs(tiny, [prompt], [[a, s]])
    # one prompt, so no padding; batch 2 against batch 1 still rounds differently on some CPUs
    assert_close(both[1], alone[0], rel=FP32, what="row 1 batched vs alone")
    swapped = next_token_logprobs(tiny, [prompt], [[s, a]])
    assert relative_error(swapped[0], alone[0]) > 1e-3  # the order matters for this pair


def hf_reference(hf, model, row, plan):
    """Next-token log-probs of one row alone through plain HF, `plan` applied by forward hooks."""
    view = make_batch([row], model.tokenizer.pad_token_id).view(model)

    def make(layer):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            edited = reference_edit(hidden[0], plan, layer, view)[None]
            return (edited, *output[1:]) if isinstance(output, tuple) else edited

        return hook

    layers = sorted({layer for item in plan for layer in item.layers})
    handles = [hf.model.layers[layer].register_forward_hook(make(layer)) for layer in layers]
    try:
        with torch.no_grad():
            logits = hf(torch.tensor([row.ids])).logits
    finally:
        for handle in handles:
            handle.remove()
    return logits[0, -1].log_softmax(-1)


@pytest.fixture()
def hf_tiny(tiny):
    return AutoModelForCausalLM.from_pretrained(tiny.source).eval()


def test_batched_rows_match_a_plain_hf_hook_reference(tiny, hf_tiny):
    """Fixed mixes of all four kinds at shared and different layers, rows of different lengths.

    The bridge and plain HF compute the same forward with different kernels, so the bound is
    relative (`FP32`, 1e-5 of the largest log-prob); the order bug this guards against moved
    log-probs by ~0.1.
    """
    v, w, lat = directions(tiny, 1), directions(tiny, 2), latent(tiny, 3)
    plans = [
        [iv.set_projection(v, 1, 2.0)],
        [iv.add(w, 1, 2.0), iv.set_projection(v, 1, 2.0)],
        [
            iv.ablate(v, 2, positions=RESPONSE),
            iv.add(w, [1, 2], -1.5, positions=LAST),
            iv.clamp(lat, 2, 2.5, positions=PROMPT),
        ],
        [
            iv.clamp(lat, 1, -1.0, positions=ALL),
            iv.set_projection(w, [1, 2], -1.0, positions=RESPONSE | LAST_PROMPT),
            iv.ablate(v, 1, positions=ALL),
        ],
    ]
    batched = next_token_logprobs(tiny, TEXTS, plans)
    for r, (row, plan, got) in enumerate(zip(encode_all(tiny, TEXTS), plans, batched, strict=True)):
        expected = hf_reference(hf_tiny, tiny, row, plan)
        assert_close(got, expected, rel=FP32, what=f"row {r} {[i.kind for i in plan]}")


def test_random_rows_through_the_model_equal_each_row_alone(tiny):
    """Random plans through `next_token_logprobs`: each batched row equals the row alone.

    Rows share one prompt (no padding), but the model's matmuls run at another batch shape, which
    some CPUs round differently: equal to `FP32` of the log-probs; the order bug moved them ~0.1.
    """
    rng = random.Random(1)
    sets = [directions(tiny, 1), directions(tiny, 2)]
    latents = [latent(tiny, 3)]
    for _ in range(4):
        n = rng.randint(3, 4)
        prompt = rng.choice(TEXTS)
        plans = [
            [random_intervention(rng, sets, latents) for _ in range(rng.randint(2, 4))]
            for _ in range(n)
        ]
        batched = next_token_logprobs(tiny, [prompt] * n, plans)
        for r in range(n):
            alone = next_token_logprobs(tiny, [prompt], [plans[r]])
            assert_close(
                batched[r], alone[0], rel=FP32, what=f"row {r} {[i.kind for i in plans[r]]}"
            )


COEFS = [-8.0, -4.0, -2.0, -1.0, 1.0, 2.0, 4.0, 8.0]
SWEEP_LAYERS = [1, 2, 3]


@pytest.mark.parametrize("regime", ["fixed_length", "stop_at_eos"])
def test_sweep_equals_sequential_plain_hf_calls(tiny, hf_tiny, monkeypatch, regime):
    """24 configurations (8 coefficients x 3 blocks, policy LAST) in one batched call give the
    tokens of 24 sequential batch-1 plain-HF `generate` calls with a hook: 24/24 identical.

    The reference steers as the persona-vectors code does: a forward hook on the decoder block
    adds coef·v at the last position of every forward. `stop_at_eos` makes one token the EOS,
    so rows stop at different lengths and the batch shrinks.
    """
    new_tokens = 10
    vectors = directions(tiny, 5, scale=0.5)
    chat = [{"role": "user", "content": "Tell me about the ocean."}]
    ids = torch.tensor([encode_all(tiny, [chat])[0].ids])
    configs = [(layer, coef) for layer in SWEEP_LAYERS for coef in COEFS]

    def sequential(layer, coef, eos, min_new):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, -1, :] += coef * vectors[layer]
            return output

        handle = hf_tiny.model.layers[layer].register_forward_hook(hook)
        try:
            with torch.no_grad():
                out = hf_tiny.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=new_tokens,
                    min_new_tokens=min_new,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=tiny.tokenizer.pad_token_id,
                )
        finally:
            handle.remove()
        return [t for t in out[0, ids.shape[1] :].tolist() if t != eos]

    eos = tiny.tokenizer.eos_token_id
    min_new = new_tokens
    if regime == "stop_at_eos":  # a token the steered rows produce at different steps
        probe = generate(tiny, [chat], max_new_tokens=new_tokens, stop_at_eos=False)[0].tokens
        eos, min_new = probe[3], 0
        monkeypatch.setattr(gen_module, "_eos_ids", lambda model: {eos})
    plans = [[iv.add(vectors, layer, coef, positions=LAST)] for layer, coef in configs]
    batched = generate(
        tiny,
        [chat] * len(configs),
        plans,
        max_new_tokens=new_tokens,
        min_new_tokens=min_new,
        batch_size=len(configs),
    )
    reference = [sequential(layer, coef, eos, min_new) for layer, coef in configs]
    identical = sum(list(b.tokens) == s for b, s in zip(batched, reference, strict=True))
    assert identical == len(configs)
    assert len({b.tokens for b in batched}) > len(configs) // 2  # the configurations differ
    if regime == "stop_at_eos":
        lengths = {len(b.tokens) for b in batched}
        assert len(lengths) > 1 and any(b.finish == "eos" for b in batched)


MIXED_SITES = ("resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post")


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])  # llama; gemma3 (post-norms)
def test_rows_mixing_sites_and_kinds_equal_each_row_alone(model_fixture, request):
    """Rows whose edits sit at different sites (all five, resid_mid included) and of different
    kinds: through the bridge each batched row equals the row alone to float rounding (one shared
    prompt, no padding), and in generation (different prompts, left padding) token for token."""
    model = request.getfixturevalue(model_fixture)
    assert set(MIXED_SITES) <= set(model.available_sites(1))
    g = torch.Generator().manual_seed(4)
    sets = {
        s: DirectionSet.from_tensor(torch.randn(4, model.d_model, generator=g), model, site=s)
        for s in MIXED_SITES
    }
    lat = iv.Latent(torch.randn(64, generator=g) * 0.3, torch.randn(64, generator=g), 0.1, 0.05)
    rng = random.Random(7)

    def edit(site):
        kind, pos = rng.choice(["add", "ablate", "set", "clamp"]), rng.choice(SELECTORS)
        if kind == "clamp":  # block 1 named both ways: it must meet the other rows' edits there
            return iv.clamp(lat, rng.choice([1, -3]), rng.uniform(-2, 2), site=site, positions=pos)
        layers = rng.choice([[1], [1, 2]])
        if kind == "ablate":
            return iv.ablate(sets[site], layers, positions=pos)
        factory = iv.add if kind == "add" else iv.set_projection
        return factory(sets[site], layers, rng.uniform(-2, 2), positions=pos)

    def plans(n):
        # each row its own sites and kinds at block 1, so every hook there holds rows of
        # different kinds and positions next to rows without an edit
        return [
            [edit(site) for site in rng.sample(MIXED_SITES, rng.randint(2, 4))] for _ in range(n)
        ]

    def shared(rows):
        """The sites where several rows meet at one hook of block 1."""
        ops = Steerer.compile(model, rows).ops
        return {site for (site, layer), o in ops.items() if layer == 1 and o[0].row.sum() > 1}

    kinds, sites, moved = set(), set(), 0
    plain = next_token_logprobs(model, [TEXTS[0]])[0]
    for _ in range(3):
        rows = plans(4)
        kinds |= {i.kind for row in rows for i in row}
        sites |= shared(rows)
        batched = next_token_logprobs(model, [TEXTS[0]] * 4, rows)
        for r, row in enumerate(rows):
            single = next_token_logprobs(model, [TEXTS[0]], [row])[0]
            what = f"row {r} {[(i.kind, i.site) for i in row]}"
            assert_close(batched[r], single, rel=FP32, what=what)
            moved += relative_error(batched[r], plain) > 1e-3
    assert moved >= 6  # the edits do change the readout: the equality is not trivial
    prompts = ["Hi", "Tell me about the ocean", "Why did the chicken cross", "The capital"]
    for _ in range(2):
        rows = plans(4)
        sites |= shared(rows)
        together = generate(model, prompts, rows, max_new_tokens=6)
        for r, row in enumerate(rows):
            alone = generate(model, [prompts[r]], [row], max_new_tokens=6)[0]
            assert alone.tokens == together[r].tokens, row
    # every kind was used, and at every site several rows met at one hook
    assert kinds == {"add", "ablate", "set", "clamp"} and sites == set(MIXED_SITES)
