import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp.steering.generation as gen_module
from interp.batching import Encoded, Example, encode_all, make_batch
from interp.positions import ALL, LAST, LAST_PROMPT, PROMPT, RESPONSE, FromMarker, Matching
from interp.steering import engine
from interp.steering import interventions as iv
from interp.steering.generation import generate, next_token_logprobs
from interp.steering.installers import on_bridge
from interp.vectors import DirectionSet
from tests.tolerance import FP32, assert_close, relative_error

PROMPTS = [
    "Tell me about the ocean and the mountains.",
    "Why did the chicken",
    "Hi",
    Example([{"role": "user", "content": "Trial 1: Do you detect an injected thought?"}], "Yes,"),
]


def vectors(model, scale=3.0, site="resid_post"):
    g = torch.Generator().manual_seed(1)
    vecs = torch.randn(model.n_layers, model.d_model, generator=g) * scale
    return DirectionSet.from_tensor(vecs, model, site=site)


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])
def test_greedy_matches_hf_generate(model_fixture, request):
    model = request.getfixturevalue(model_fixture)
    ours = generate(model, PROMPTS[:3], max_new_tokens=10, stop_at_eos=False)
    hf = AutoModelForCausalLM.from_pretrained(model.source).eval()
    for prompt, out in zip(PROMPTS[:3], ours, strict=True):
        ids = torch.tensor([encode_all(model, [prompt])[0].ids])
        ref = hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=10,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=model.tokenizer.pad_token_id,
        )
        assert list(out.tokens) == ref[0, ids.shape[1] :].tolist()


def test_batching_does_not_change_outputs(tiny):
    for temperature, top_p, seed in ((0.0, 1.0, 0), (1.0, 0.9, 7)):
        one = generate(
            tiny,
            PROMPTS,
            max_new_tokens=12,
            batch_size=1,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
        many = generate(
            tiny,
            PROMPTS,
            max_new_tokens=12,
            batch_size=4,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
        assert [g.tokens for g in one] == [g.tokens for g in many]
    a = generate(tiny, PROMPTS[:1], temperature=1.0, seed=1, max_new_tokens=12)
    b = generate(tiny, PROMPTS[:1], temperature=1.0, seed=2, max_new_tokens=12)
    assert a[0].tokens != b[0].tokens  # the seed matters


@pytest.mark.parametrize("site", ["resid_post", "resid_mid", "attn_out"])
@pytest.mark.parametrize("positions", [RESPONSE, LAST, ALL, RESPONSE | LAST_PROMPT, PROMPT])
def test_coefficient_zero_is_token_identical(tiny, positions, site):
    plain = generate(tiny, PROMPTS, max_new_tokens=12)
    ds = vectors(tiny, site=site)
    zero = generate(tiny, PROMPTS, iv.add(ds, [1, 2], 0.0, positions=positions), max_new_tokens=12)
    assert [g.tokens for g in zero] == [g.tokens for g in plain]
    steered = generate(
        tiny, PROMPTS, iv.add(ds, [1, 2], 4.0, positions=positions), max_new_tokens=12
    )
    assert [g.tokens for g in steered] != [g.tokens for g in plain]


def test_sweep_rows_equal_running_each_configuration_alone(tiny):
    ds = vectors(tiny)
    configs = [
        [iv.add(ds, layer, coef, positions=pos)]
        for layer in (1, 2)
        for coef in (-4.0, 0.0, 4.0)
        for pos in (RESPONSE | LAST_PROMPT, LAST)
    ] + [[iv.ablate(ds, 2), iv.add(ds, 1, 2.0)]]
    prompts = [PROMPTS[i % 3] for i in range(len(configs))]
    batched = generate(tiny, prompts, configs, max_new_tokens=10, batch_size=len(configs))
    alone = [
        generate(tiny, [p], c, max_new_tokens=10)[0] for p, c in zip(prompts, configs, strict=True)
    ]
    assert [g.tokens for g in batched] == [g.tokens for g in alone]


@pytest.mark.parametrize(
    "positions",
    [
        RESPONSE,
        ALL,
        PROMPT,
        LAST_PROMPT,
        RESPONSE | LAST_PROMPT,
        FromMarker("Trial 1"),
        Matching("e"),
    ],
    ids=str,
)
@pytest.mark.parametrize("site", ["resid_post", "resid_mid", "mlp_out"])
def test_prefill_and_decoding_apply_the_same_positions(tiny, positions, site):
    """Greedy tokens under a policy are re-predicted by one teacher-forced forward under it."""
    prompts = [PROMPTS[3], Example("Trial 1: tell me about the ocean")]
    plan = [iv.add(vectors(tiny, site=site), [1, 2], 6.0, positions=positions)]
    outs = generate(tiny, prompts, plan, max_new_tokens=10, stop_at_eos=False)
    rows = encode_all(tiny, prompts)
    full = [
        Encoded(r.ids + g.tokens, r.prompt_len, r.text, r.spans + ((0, 0),) * len(g.tokens))
        for r, g in zip(rows, outs, strict=True)
    ]
    batch = make_batch(full, tiny.tokenizer.pad_token_id, "right")
    steer = engine.Steerer.compile(tiny, [plan, plan])
    steer.set_view(batch.view(tiny))
    with torch.no_grad(), on_bridge(steer):
        logits = tiny.bridge(
            batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        )
    for i, (row, out) in enumerate(zip(rows, outs, strict=True)):
        n = len(row)
        predicted = logits[i, n - 1 : n - 1 + len(out.tokens)].argmax(-1).tolist()
        assert predicted == list(out.tokens)


def test_finished_rows_leave_the_batch_without_changing_the_rest(tiny, monkeypatch):
    """Rows 0 and 2 stop early; every row keeps its own (distinct, non-zero) intervention."""
    ds = vectors(tiny)
    plans = [[iv.add(ds, 1, c, positions=RESPONSE | LAST_PROMPT)] for c in (2.0, -1.5, 3.0)]
    free = generate(tiny, PROMPTS[:3], plans, max_new_tokens=8, stop_at_eos=False)
    plain = generate(tiny, PROMPTS[:3], max_new_tokens=8, stop_at_eos=False)
    assert all(f.tokens != p.tokens for f, p in zip(free, plain, strict=True))  # edits matter
    # "stop" tokens: rows 0 and 2 reach one early, row 1 never does
    stop = {free[0].tokens[2], free[2].tokens[4]}
    assert not stop & set(free[1].tokens) and stop.isdisjoint(free[2].tokens[:4])
    monkeypatch.setattr(gen_module, "_eos_ids", lambda model: stop)
    batched = generate(tiny, PROMPTS[:3], plans, max_new_tokens=8, batch_size=3)
    alone = [
        generate(tiny, [p], plan, max_new_tokens=8)[0]
        for p, plan in zip(PROMPTS[:3], plans, strict=True)
    ]
    assert [g.tokens for g in batched] == [g.tokens for g in alone]
    assert batched[0].finish == "eos" and len(batched[0].tokens) <= 2
    assert batched[2].finish == "eos" and len(batched[2].tokens) <= 4
    assert batched[1].finish == "length" and batched[1].tokens == free[1].tokens


def hook_sets(model):
    """Every torch hook on every module (HF installs some of its own; those must stay)."""
    modules = list(model.hf.modules()) + list(model.bridge.modules())
    return {
        (id(m), kind, key)
        for m in modules
        for kind in ("_forward_hooks", "_forward_pre_hooks")
        for key in getattr(m, kind)
    }


def test_hooks_are_removed_when_steering_fails(tiny):
    clean = generate(tiny, PROMPTS[:2], max_new_tokens=6)
    wrapped_layer = tiny.hf.model.layers[1]
    before = hook_sets(tiny)
    bad = iv.add(vectors(tiny), 1, 5.0, positions=FromMarker("never appears"))
    with pytest.raises(ValueError, match="marker 'never appears' not found"):
        generate(tiny, PROMPTS[:2], bad, max_new_tokens=6)
    with pytest.raises(ValueError, match="marker 'never appears' not found"):
        next_token_logprobs(tiny, PROMPTS[:2], bad)
    assert tiny.hf.model.layers[1] is wrapped_layer  # the bridge's modules are back
    for point in tiny.hook_points().values():
        assert not point.fwd_hooks
    assert hook_sets(tiny) == before
    assert [g.tokens for g in generate(tiny, PROMPTS[:2], max_new_tokens=6)] == [
        g.tokens for g in clean
    ]


def test_argument_errors(tiny):
    with pytest.raises(ValueError, match="temperature"):
        generate(tiny, ["Hi"], temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        generate(tiny, ["Hi"], temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="seeds has 2 entries for 1 prompts"):
        generate(tiny, ["Hi"], seeds=[1, 2])
    with pytest.raises(ValueError, match="input is empty"):
        generate(tiny, [])


def test_next_token_logprobs_match_the_generation_path(tiny):
    plan = iv.add(vectors(tiny), [1, 2], 3.0, positions=ALL)
    lp = next_token_logprobs(tiny, PROMPTS, plan)
    first = generate(tiny, PROMPTS, plan, max_new_tokens=1, stop_at_eos=False)
    assert lp.argmax(-1).tolist() == [g.tokens[0] for g in first]
    assert torch.allclose(lp.exp().sum(-1), torch.ones(len(PROMPTS)), atol=1e-4)


def test_a_shared_prompt_prefix_runs_once_and_changes_nothing(tiny, monkeypatch):
    ds = vectors(tiny)
    prompt = PROMPTS[3]
    plans = [
        [iv.add(ds, layer, coef, positions=pos)]
        for layer in (1, 2)
        for coef in (-4.0, 4.0)
        for pos in (LAST, RESPONSE, FromMarker("Trial 1"))
    ]
    shared = []
    real = gen_module._shared_prefix

    def spy(*args):
        shared.append(real(*args))
        return shared[-1]

    monkeypatch.setattr(gen_module, "_shared_prefix", spy)
    batched = generate(tiny, [prompt] * len(plans), plans, max_new_tokens=10, batch_size=len(plans))
    assert shared[-1] > 0  # the prefix before "Trial 1" was computed once
    alone = [generate(tiny, [prompt], p, max_new_tokens=10)[0] for p in plans]
    assert [g.tokens for g in batched] == [g.tokens for g in alone]
    # sampling several answers to one prompt (no steering) shares all but the last prompt token
    samples = generate(tiny, [prompt] * 4, temperature=1.0, seed=3, max_new_tokens=10, batch_size=4)
    assert shared[-1] == len(encode_all(tiny, [prompt])[0]) - 1
    one_by_one = generate(
        tiny, [prompt] * 4, temperature=1.0, seed=3, max_new_tokens=10, batch_size=1
    )
    assert [g.tokens for g in samples] == [g.tokens for g in one_by_one]
    # an intervention on every token leaves nothing to share
    generate(
        tiny,
        [prompt] * 2,
        [[iv.add(ds, 1, 1.0, positions=ALL)]] * 2,
        max_new_tokens=2,
        batch_size=2,
    )
    assert shared[-1] == 0


def test_min_new_tokens_keeps_eos_away(tiny, monkeypatch):
    free = generate(tiny, PROMPTS[:1], max_new_tokens=8, stop_at_eos=False)[0].tokens
    first_new = next(i for i in range(1, 8) if free[i] not in free[:i])
    stop = free[first_new]
    monkeypatch.setattr(gen_module, "_eos_ids", lambda model: {stop})
    short = generate(tiny, PROMPTS[:1], max_new_tokens=8)
    assert short[0].finish == "eos" and short[0].tokens == free[:first_new]
    held = generate(tiny, PROMPTS[:1], max_new_tokens=8, min_new_tokens=8)
    assert held[0].finish == "length" and len(held[0].tokens) == 8
    assert stop not in held[0].tokens
    with pytest.raises(ValueError, match="min_new_tokens"):
        generate(tiny, PROMPTS[:1], max_new_tokens=4, min_new_tokens=5)


def test_generation_passes_the_cache_under_its_current_name(tiny):
    """No `past_key_values` deprecation warning (warnings or transformers' logger), with and
    without a shared prefix, while decoding and when finished rows leave the batch."""
    import logging

    import transformers.utils.logging as hf_logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    hf_logging.warning_once.cache_clear()  # it would stay silent if it fired earlier
    ds = vectors(tiny)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generate(tiny, PROMPTS, iv.add(ds, 1, 2.0, positions=LAST), max_new_tokens=4)
            shared = [[iv.add(ds, 1, c, positions=LAST)] for c in (1.0, -1.0)]
            generate(tiny, [PROMPTS[3]] * 2, shared, max_new_tokens=4)
    finally:
        hf_logger.removeHandler(handler)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in records]
    assert not [m for m in said if "deprecated" in m or "past_key_values" in m], said


def test_non_finite_sampling_settings_are_refused(tiny):
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"temperature must be a finite number.*got {bad}"):
            generate(tiny, ["Hi"], temperature=bad)
        with pytest.raises(ValueError, match=f"top_p must be a number in \\(0, 1\\].*got {bad}"):
            generate(tiny, ["Hi"], temperature=1.0, top_p=bad)


def test_negative_layers_resolve_the_same_in_generation_and_readouts(tiny):
    """clamp(latent, -1, …) is the last block everywhere (it crashed in generate)."""
    g = torch.Generator().manual_seed(5)
    latent = iv.Latent(torch.randn(64, generator=g), torch.randn(64, generator=g) * 3, 0.5)
    last = tiny.n_layers - 1
    neg, pos = iv.clamp(latent, -1, 4.0), iv.clamp(latent, last, 4.0)
    out_neg = generate(tiny, PROMPTS[:2], neg, max_new_tokens=6)
    out_pos = generate(tiny, PROMPTS[:2], pos, max_new_tokens=6)
    assert [g.tokens for g in out_neg] == [g.tokens for g in out_pos]
    assert [g.tokens for g in out_pos] != [
        g.tokens for g in generate(tiny, PROMPTS[:2], max_new_tokens=6)
    ]
    assert torch.equal(
        next_token_logprobs(tiny, PROMPTS[:2], neg), next_token_logprobs(tiny, PROMPTS[:2], pos)
    )
    with pytest.raises(ValueError, match="layer -9 is out of range"):
        generate(tiny, PROMPTS[:1], iv.clamp(latent, -9, 4.0), max_new_tokens=2)


def test_one_intervention_per_prompt_in_a_flat_list_is_refused(tiny):
    """[a, b] for two prompts reads both ways (one each, or both on each): say how to write it."""
    ds = vectors(tiny)
    a, b = iv.add(ds, 1, -4.0), iv.add(ds, 1, 4.0)
    with pytest.raises(ValueError, match=r"ambiguous: write \[\[a\], \[b\], \.\.\.\].*\* 2"):
        generate(tiny, PROMPTS[:2], [a, b], max_new_tokens=2)
    with pytest.raises(ValueError, match="ambiguous"):
        next_token_logprobs(tiny, PROMPTS[:2], [a, b])
    assert engine.per_row([a, b], 3) == [[a, b]] * 3  # any other length: shared by all rows
    assert engine.per_row([a], 2) == [[a], [a]]
    assert engine.per_row([a], 1) == [[a]]
    assert engine.per_row(a, 2) == [[a], [a]]


def test_an_overflowing_edit_names_the_intervention_and_the_prompt(tiny):
    """An edit that turns the residual into inf is refused, naming kind, label, site, layer,
    coefficient and the prompt's index in the caller's list (it used to name the row of the
    length-sorted batch: "batch row 2" for prompt 1 here).

    Coefficients that large are refused up front now; a clamp whose latent reads a huge value
    still overflows: f(x) = bias = 3e38 and the decoder writes (0 − f)·4·e₀ = −1.2e39."""
    decoder = torch.zeros(64)
    decoder[0] = 4.0
    huge = iv.Latent(torch.zeros(64), decoder, 3e38)
    edit = iv.clamp(huge, 2, 0.0, positions=LAST, label="huge")
    prompts = ["Tell me about the ocean and the mountains.", "Hi", "Why did the chicken"]
    plans = [[], [edit], []]  # sorted by length, "Hi" is the batch's last row
    message = (
        r"clamp intervention 'huge' at resid_post layer 2 with coefficient 0 made the "
        r"activation of prompt 1 inf/NaN"
    )
    with pytest.raises(FloatingPointError, match=message):
        generate(tiny, prompts, plans, max_new_tokens=4)
    with pytest.raises(FloatingPointError, match=message):
        next_token_logprobs(tiny, prompts, plans)
    with pytest.raises(ValueError, match=r"add intervention 'big' at resid_post layers \[2\]"):
        iv.add(vectors(tiny), 2, 1e38, positions=LAST, label="big")  # refused before any run


def test_stop_strings_end_a_row_and_are_cut_from_its_text(tiny):
    free = generate(tiny, PROMPTS[:3], max_new_tokens=16, stop_at_eos=False, stop=())
    text = free[0].text
    middle = len(text) // 2
    stop = text[middle : middle + 2]
    assert stop.strip(), text  # the tiny model writes visible characters
    got = generate(tiny, PROMPTS[:3], max_new_tokens=16, stop_at_eos=False, stop=[stop])
    assert got[0].finish == "stop" and got[0].text == text[: text.find(stop)]
    assert got[0].tokens == free[0].tokens[: len(got[0].tokens)]  # the same tokens, fewer
    for before, after in zip(free[1:], got[1:], strict=True):
        if stop not in before.text:
            assert after == before  # rows without the string are untouched
    (alone,) = generate(tiny, PROMPTS[:1], max_new_tokens=16, stop_at_eos=False, stop=[stop])
    assert alone == got[0]  # and the row is the same alone as in the batch
    with pytest.raises(TypeError, match="pass \\['x'\\]"):
        generate(tiny, PROMPTS[:1], stop="x")
    with pytest.raises(ValueError, match="non-empty strings"):
        generate(tiny, PROMPTS[:1], stop=[""])


def test_a_base_model_stops_where_it_starts_the_next_user_turn(tiny, tiny_base):
    assert tiny.stop_strings == () and tiny_base.stop_strings == ("\nUser:",)
    assert gen_module.stop_strings(tiny_base, None) == ("\nUser:",)
    assert gen_module.stop_strings(tiny_base, ()) == ()


SHARED = "I am an interpretability researcher studying transformer models.\n\nTrial 1: "
ENDINGS = ["Tell me about the ocean", "Why did the chicken cross", "The capital of France", "Hi"]


@pytest.mark.parametrize("model_fixture", ["tiny", "tiny_base"])
def test_logprobs_after_a_shared_prefix_equal_each_row_alone(model_fixture, request, monkeypatch):
    """Rows sharing a long untouched prefix run it once; each row still gets what a plain
    forward of that row alone (a plain HF model with a hand-written hook) gives."""
    model = request.getfixturevalue(model_fixture)
    prompts = [SHARED + e for e in ENDINGS]
    ds = vectors(model)
    marker = FromMarker("Trial 1", "start")
    plans = [[iv.add(ds, 1, c, positions=marker)] if c else [] for c in (2.0, 0.0, -3.0, 1.0)]
    forwards = []
    real = gen_module._forward_sharing

    def counted(model_, hf, batch, steerer, shared, keep):
        forwards.append(shared)
        return real(model_, hf, batch, steerer, shared, keep)

    monkeypatch.setattr(gen_module, "_forward_sharing", counted)
    batched = next_token_logprobs(model, prompts, plans, batch_size=4)
    assert len(forwards) == 1 and forwards[0] >= gen_module.MIN_SHARED_PREFIX  # it was shared

    hf = AutoModelForCausalLM.from_pretrained(model.source).eval()
    block = hf.model.layers[1]
    for prompt, plan, got in zip(prompts, plans, batched, strict=True):
        (row,) = encode_all(model, [prompt])
        start = row.find("Trial 1", "start")
        coef = plan[0].coef if plan else 0.0

        def hook(_module, _inputs, output, start=start, coef=coef):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, start:] += coef * ds[1]
            return output

        handle = block.register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = hf(torch.tensor([row.ids])).logits[0, -1]
        finally:
            handle.remove()
        assert_close(got, logits.log_softmax(-1), rel=FP32, what=f"{prompt!r} against plain HF")


def test_an_edit_inside_the_prefix_is_never_skipped(tiny, monkeypatch):
    prompts = [SHARED + e for e in ENDINGS]
    ds = vectors(tiny)
    plans = [[iv.add(ds, 1, 2.0, positions=ALL)], [], [], []]  # row 0 edits the whole prompt
    pairs = zip(prompts, plans, strict=True)
    alone = torch.stack([next_token_logprobs(tiny, [p], [pl])[0] for p, pl in pairs])
    monkeypatch.setattr(gen_module, "_forward_sharing", None)  # sharing must not be tried
    batched = next_token_logprobs(tiny, prompts, plans, batch_size=4)
    assert_close(batched, alone, rel=FP32, what="batched against alone")  # other batch shapes
    unedited = next_token_logprobs(tiny, [prompts[0]])[0]
    assert relative_error(batched[0], unedited) > 1e-3  # the edit did change row 0
