"""Batched generation with interventions, and next-token readouts under interventions.

`generate` runs on the plain HF modules (`Model.unwrapped()`, SDPA attention) with a KV cache:
one prefill over the left-padded prompts, then one token per row per step. Interventions see the
same `TokenView` semantics in prefill and in decoding (`interp.positions`), so "response" means
the generated tokens and `LAST` means the last prompt token and then each new token.

Rows that finish (EOS) leave the batch, cache included, so a sweep whose rows stop at different
lengths does not keep paying for the short ones. Sampling uses one generator per row seeded from
`(seed, row index in the call)`, so a row's sample does not depend on how rows were batched.
The generators live on the device of the logits (the last block's, for a model split over
devices), so a row's samples depend on that device type but not on the batch.

Token identity (a batched row gives the same tokens as the row run alone, or as plain HF
generate) is a claim for CPU float32, where tests check it exactly. On a GPU (bf16, TF32 kernels
that depend on the batch shape) expect logits equal within a tolerance, and greedy tokens can
differ where two candidates are that close; no GPU test runs in this suite yet.

`next_token_logprobs` is the analysis twin: one forward per row returning the log-probabilities
after the row's last token, with interventions applied. Rows that share a prompt prefix no
intervention touches (e.g. a long framing before an injection marker) run that prefix once per
batch on the plain HF modules and repeat its KV cache, as `generate` does; other batches run
through the bridge. Both give the same numbers within float tolerance (tested).

Under interventions, NaN or +inf logits raise (naming the prompt and its edits) rather than
being sampled from or returned.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.batching import Batch, Encoded, TokenView, encode_all, length_sorted_batches, make_batch
from interp.models import Model
from interp.progress import bar as progress_bar
from interp.steering.engine import Steerer, per_row
from interp.steering.installers import on_bridge, on_hf
from interp.steering.interventions import Intervention

Interventions = Intervention | Sequence[Intervention] | Sequence[Sequence[Intervention]] | None


@dataclass(frozen=True)
class Generation:
    """One generated continuation."""

    text: str
    tokens: tuple[int, ...]
    finish: Literal["eos", "length", "stop"]  # "stop": a stop string ended it (not in text)


def _eos_ids(model: Model) -> set[int]:
    ids = {model.tokenizer.eos_token_id}
    configured = getattr(getattr(model.hf, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(i) for i in ids if i is not None}


def _choose(
    logits: Float[Tensor, "batch vocab"],
    temperature: float,
    top_k: int,
    top_p: float,
    generators: Sequence[torch.Generator],
) -> Int[Tensor, " batch"]:
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k > 0:
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - ordered.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    probs = scores.softmax(dim=-1)
    picks = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
    return torch.cat(picks)


def _check_sampling(temperature: float, top_k: int, top_p: float, max_new_tokens: int) -> None:
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
        )
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] (1 = off), got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")


def generate(
    model: Model,
    prompts: Sequence[Any],
    interventions: Interventions = None,
    *,
    max_new_tokens: int = 64,
    min_new_tokens: int = 0,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    batch_size: int = 32,
    stop_at_eos: bool = True,
    stop: Sequence[str] | None = None,
    allow_other_model: bool = False,
    progress: bool | None = None,
) -> list[Generation]:
    """Generate a continuation for every prompt, with interventions, in batches.

    Args:
        prompts: strings, chats or `Example`s; an `Example`'s response is a prefill that the
            model continues (and that `RESPONSE` positions cover).
        interventions: one Intervention or a list of them for all rows, or one list per
            prompt (a sweep); n interventions for n prompts is refused as ambiguous (see
            `engine.per_row`).
        min_new_tokens: EOS cannot be chosen before this many tokens (as in HF generate).
        temperature: 0 is greedy; otherwise sample with optional `top_k` / `top_p`.
        seed: row i samples from a generator seeded with (seed, i).
        seeds: one seed per row instead (sweeps derive them from each unit's config, so a
            resumed or re-batched run samples exactly the same text).
        stop: strings that end a reply where they appear (cut from its text, finish "stop");
            None takes `model.stop_strings` ("\nUser:" for a base model on the plain chat
            fallback, nothing with a chat template), () turns them off.
    """
    _check_sampling(temperature, top_k, top_p, max_new_tokens)
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(
            f"min_new_tokens must be between 0 and max_new_tokens, got {min_new_tokens}"
        )
    rows = encode_all(model, prompts)
    plans = per_row(interventions, len(rows))
    if seeds is not None and len(seeds) != len(rows):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(rows)} prompts")
    row_seeds = (
        list(seeds) if seeds is not None else [seed * 1_000_003 + i for i in range(len(rows))]
    )
    results: list[Generation | None] = [None] * len(rows)
    eos = _eos_ids(model) if stop_at_eos else set()
    stops = stop_strings(model, stop)
    with progress_bar(len(rows), "generate", "gen", progress) as bar:
        for group in length_sorted_batches(
            [len(r) for r in rows], batch_size, [r.ids for r in rows]
        ):
            out = _generate_batch(
                model,
                [rows[i] for i in group],
                group,
                [plans[i] for i in group],
                max_new_tokens,
                min_new_tokens,
                temperature,
                top_k,
                top_p,
                [row_seeds[i] for i in group],
                eos,
                stops,
                allow_other_model,
            )
            for i, gen in zip(group, out, strict=True):
                results[i] = gen
            bar.update(len(group))
    return [r for r in results if r is not None]


def _generate_batch(
    model: Model,
    rows: list[Encoded],
    ids: list[int],
    plans: list[list[Intervention]],
    max_new_tokens: int,
    min_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seeds: list[int],
    eos: set[int],
    stops: tuple[str, ...],
    allow_other_model: bool,
) -> list[Generation]:
    device = model.device
    batch = make_batch(rows, model.tokenizer.pad_token_id, "left", device, ids)
    steerer = Steerer.compile(model, plans, allow_other_model) if any(plans) else None
    alive = list(range(len(rows)))  # batch row -> index into rows
    outputs: list[list[int]] = [[] for _ in rows]
    finish: list[Literal["eos", "length", "stop"]] = ["length"] * len(rows)
    mask = batch.attention_mask
    lengths = mask.sum(dim=-1, keepdim=True)  # real tokens per row = index of the next token
    # hooks first: they are found through the bridge, which unwrapped() rearranges
    with (
        torch.no_grad(),
        on_hf(steerer) if steerer else contextlib.nullcontext(),
        model.unwrapped() as hf,
    ):
        out = _prefill(model, hf, batch, steerer)
        cache = _cache_of(out)
        # the logits sit on the last block's device (models split over devices): sample there
        logits_device = out.logits.device
        generators = [torch.Generator(device=logits_device).manual_seed(s) for s in seeds]
        for step in range(max_new_tokens):
            gens = [generators[i] for i in alive]
            logits = out.logits[:, -1]
            if steerer:
                _check_logits(logits, [ids[i] for i in alive], [plans[i] for i in alive])
            if step < min_new_tokens and eos:
                logits = logits.index_fill(
                    -1, torch.tensor(sorted(eos), device=logits.device), float("-inf")
                )
            chosen = _choose(logits, temperature, top_k, top_p, gens)
            done = torch.zeros_like(chosen, dtype=torch.bool)
            for j, (row, token) in enumerate(zip(alive, chosen.tolist(), strict=True)):
                if token in eos:
                    finish[row], done[j] = "eos", True
                else:
                    outputs[row].append(token)
                    if stops and _ends_at_stop(model, outputs[row], stops):
                        finish[row], done[j] = "stop", True
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            if bool(done.any()):  # drop finished rows, cache and interventions included
                keep = (~done).nonzero().flatten().cpu()  # a CPU index works on every device
                cache.batch_select_indices(keep)
                alive = [alive[j] for j in keep.tolist()]
                chosen, mask, lengths = chosen[keep], mask[keep], lengths[keep]
                if steerer:
                    steerer.select(keep)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            position = lengths + step
            step_ids = chosen[:, None].to(device)
            if steerer:
                live = [rows[i] for i in alive]
                steerer.set_view(
                    TokenView(step_ids, position, live, [ids[i] for i in alive], model)
                )
            out = hf(
                step_ids,
                attention_mask=mask,
                position_ids=position,
                use_cache=True,
                **_cache_arg(hf, cache),
            )
    tokenizer = model.tokenizer
    out = []
    for i, tokens in enumerate(outputs):
        text = str(tokenizer.decode(tokens, skip_special_tokens=True))
        found = [text.find(s) for s in stops if s in text] if finish[i] == "stop" else []
        if found:
            text = text[: min(found)]
        out.append(Generation(text, tuple(tokens), finish[i]))
    return out


def stop_strings(model: Model, stop: Sequence[str] | None) -> tuple[str, ...]:
    """The stop strings a generation uses: `stop`, or the model's default when None."""
    if stop is None:
        return model.stop_strings
    if isinstance(stop, str):
        raise TypeError(f"stop must be a list of strings, not the string {stop!r}; pass [{stop!r}]")
    given = tuple(stop)
    bad = [s for s in given if not isinstance(s, str) or not s]
    if bad:
        raise ValueError(f"stop strings must be non-empty strings, got {bad[0]!r}")
    return given


def _ends_at_stop(model: Model, tokens: list[int], stops: tuple[str, ...]) -> bool:
    """Whether the decoded reply so far contains a stop string (checked on its last tokens:
    the new token can only complete a stop string that ends in it). The reply's `tokens` keep
    the tokens that wrote the stop string; only its text is cut."""
    longest = max(len(s.encode()) for s in stops)  # bytes: a byte-level BPE token may hold one
    tail = str(model.tokenizer.decode(tokens[-(longest + 2) :], skip_special_tokens=True))
    return any(s in tail for s in stops)


def _check_logits(
    logits: Float[Tensor, "batch vocab"],
    example_ids: Sequence[int],
    plans: Sequence[Sequence[Intervention]],
) -> None:
    """Refuse NaN or +inf logits under interventions, naming the first such prompt's edits.

    Compile-time checks refuse edits too large for the dtype; this catches what gets past them
    (e.g. a latent whose encoder reads a huge value), instead of sampling from garbage.
    """
    bad = (logits.isnan() | logits.isposinf()).any(dim=-1)  # -inf: a token ruled out, fine
    if not bool(bad.any()):
        return
    rows = bad.nonzero().flatten().tolist()
    r = next((i for i in rows if plans[i]), rows[0])  # a steered row, if any is broken
    edits = "; ".join(_summary(i) for i in plans[r]) or "none on this row"
    raise FloatingPointError(
        f"the logits of prompt {example_ids[r]} are NaN/inf under its interventions ({edits}); "
        "the edits broke the forward pass: use smaller coefficients or values"
    )


def _summary(iv: Intervention) -> str:
    label = f" {iv.label!r}" if iv.label else ""
    return f"{iv.kind}{label} at {iv.site} layers {list(iv.layers)} coef {iv.coef:g}"


def _cache_arg(hf: Any, cache: Any) -> dict[str, Any]:
    """The KV cache as a keyword argument, under the name the model's forward takes.

    transformers 5.x renamed `past_key_values` to `cache` (the old name warns and goes in 5.40).
    """
    takes = _takes_cache(type(hf).forward)
    return {"cache": cache} if takes else {"past_key_values": cache}


@functools.cache
def _takes_cache(forward: Callable[..., Any]) -> bool:
    """Whether a model class's `forward` takes the KV cache as `cache` (read once per class)."""
    return "cache" in inspect.signature(forward).parameters


def _cache_of(out: Any) -> Any:
    """The KV cache a forward returned (`cache` in transformers 5.x, `past_key_values` before)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def _shared_prefix(model: Model, batch: Batch, steerer: Steerer | None) -> int:
    """Leading prompt tokens that every row shares and no intervention touches (0 if none).

    Sweeps often run one prompt under many configurations; those tokens' keys and values are
    the same in every row, so they are computed once and the cache is repeated.
    """
    ids = batch.input_ids
    if ids.shape[0] < 2 or not bool((ids == ids[:1]).all()) or not bool(batch.attention_mask.all()):
        return 0
    shared = ids.shape[1] - 1  # the last prompt token always runs per row (it yields the logits)
    if steerer is not None:
        view = batch.view(model)
        for index in steerer.touched(view):
            shared = min(shared, index)
    return max(shared, 0)


def _prefill(model: Model, hf: Any, batch: Batch, steerer: Steerer | None) -> Any:
    """Run the prompts; a prefix shared by all rows and untouched by interventions runs once."""
    return _forward_sharing(model, hf, batch, steerer, _shared_prefix(model, batch, steerer), 1)


def _forward_sharing(
    model: Model, hf: Any, batch: Batch, steerer: Steerer | None, shared: int, keep: int
) -> Any:
    """Forward `batch` with a KV cache; its first `shared` tokens (the same in every row, no
    edit there) run once and their cache is repeated. `keep` is HF's `logits_to_keep` (0: all)."""
    if shared == 0:
        if steerer:
            steerer.set_view(batch.view(model))
        return hf(
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
            logits_to_keep=keep,
        )
    with steerer.paused() if steerer else contextlib.nullcontext():
        prefix = hf(
            batch.input_ids[:1, :shared],
            position_ids=batch.position_ids[:1, :shared],
            use_cache=True,
            logits_to_keep=1,
        )
    cache = _cache_of(prefix)
    cache.batch_repeat_interleave(batch.input_ids.shape[0])
    rest = slice(shared, None)
    if steerer:
        view = batch.view(model)
        steerer.set_view(
            TokenView(
                batch.input_ids[:, rest], view.index[:, rest], view.rows, view.example_ids, model
            )
        )
    return hf(
        batch.input_ids[:, rest],
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids[:, rest],
        use_cache=True,
        **_cache_arg(hf, cache),
        logits_to_keep=keep,
    )


def steered_logits(
    model: Model,
    batch: Batch,
    plans: Sequence[Sequence[Intervention]],
    allow_other_model: bool = False,
) -> Float[Tensor, "batch pos vocab"]:
    """Logits at every position of one batch through the bridge, row i under `plans[i]`."""
    steerer = Steerer.compile(model, list(plans), allow_other_model) if any(plans) else None
    with torch.no_grad(), on_bridge(steerer) if steerer else contextlib.nullcontext():
        if steerer:
            steerer.set_view(batch.view(model))
        logits: Tensor = model.bridge(
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        )
    return logits


def next_token_logprobs(
    model: Model,
    data: Sequence[Any],
    interventions: Interventions = None,
    *,
    batch_size: int = 16,
    allow_other_model: bool = False,
) -> Float[Tensor, "example vocab"]:
    """Log-probabilities of the token after each example's last token, under interventions.

    Right-padded; returns float32 on the CPU. A batch whose rows share at least
    `MIN_SHARED_PREFIX` leading tokens that no intervention edits runs that prefix once on the
    plain HF modules (the interventions hooked there, as in `generate`); any other batch, or one
    with a site that has no HF module, runs through the bridge's hook points.
    """
    rows = encode_all(model, data)
    plans = per_row(interventions, len(rows))
    out: list[Tensor | None] = [None] * len(rows)
    for group in length_sorted_batches([len(r) for r in rows], batch_size):
        batch = make_batch(
            [rows[i] for i in group], model.tokenizer.pad_token_id, "right", model.device, group
        )
        group_plans = [plans[i] for i in group]
        final = _last_logits(model, batch, group_plans, allow_other_model)
        if any(group_plans):
            _check_logits(final, group, group_plans)
        picked = final.float().log_softmax(dim=-1)
        for j, i in enumerate(group):
            out[i] = picked[j].cpu()
    return torch.stack([t for t in out if t is not None])


# below this many shared tokens, running the prefix apart costs more than it saves
MIN_SHARED_PREFIX = 8


def _common_prefix(batch: Batch) -> int:
    """Leading tokens identical in every row, leaving each row at least its last token."""
    ids, lengths = batch.input_ids, batch.attention_mask.sum(dim=-1)
    same = (ids == ids[:1]).all(dim=0).long()
    run = int(same.cumprod(dim=0).sum())
    return min(run, int(lengths.min()) - 1)


def _last_logits(
    model: Model,
    batch: Batch,
    plans: Sequence[Sequence[Intervention]],
    allow_other_model: bool,
) -> Float[Tensor, "batch vocab"]:
    """Logits after each row's last real token of a right-padded batch, row i under plans[i].

    A prefix shared by every row and touched by no intervention runs once (plain HF modules,
    KV cache repeated per row); the rest of each row then runs against that cache.
    """
    steerer = Steerer.compile(model, list(plans), allow_other_model) if any(plans) else None
    shared = _common_prefix(batch) if batch.input_ids.shape[0] > 1 else 0
    if steerer is not None and shared > 0:
        shared = min([shared, *steerer.touched(batch.view(model))])
    last = batch.attention_mask.sum(dim=-1) - 1
    with contextlib.ExitStack() as stack:
        if shared >= MIN_SHARED_PREFIX and steerer is not None:
            try:  # a site with no HF module to hook runs on the bridge path instead
                stack.enter_context(on_hf(steerer))
            except ValueError:
                shared = 0
        if shared < MIN_SHARED_PREFIX:
            stack.close()
            full = steered_logits(model, batch, plans, allow_other_model)
            at = last.to(full.device)  # the logits sit on the last block's device
            return full[torch.arange(len(plans), device=full.device), at]
        hf = stack.enter_context(model.unwrapped())
        with torch.no_grad():
            out = _forward_sharing(model, hf, batch, steerer, shared, 0)
    logits: Tensor = out.logits
    at = (last - shared).to(logits.device)
    return logits[torch.arange(len(plans), device=logits.device), at]
