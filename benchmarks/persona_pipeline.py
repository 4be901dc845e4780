"""Persona extraction stage by stage, and its two batched parts against their baselines.

1. Extraction of one trait (default `evil`) with 5 instructions × 20 questions × 2 samples per
   polarity (400 rollouts of up to 96 new tokens at temperature 1) on SmolLM2, from an empty
   directory: the time of generation, judging (classifier training + trait scores, offline
   coherence) and capture, each timed apart.
2. The generation stage against plain HF `generate` on the same 400 chat prompts at the same
   batch size (32, left-padded, `do_sample=True, temperature=1, top_k=0`), in the same process:
   new tokens per second (a row's new tokens count up to and including its EOS). Goal ≥ 0.9×.
3. A steering-evaluation sweep (2 blocks × 3 coefficients × 5 questions, greedy, 48 new tokens)
   as one batched `sweep` against the reference code's way: plain HF `generate` at batch 1, one
   configuration at a time, with a forward hook adding coef·v to the last position of every
   forward (persona-vectors' "response" mode). Outputs are compared token for token.

`python -m benchmarks.persona_pipeline [--trait evil] [--samples 2]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import interp
from benchmarks.common import plain_hf, record
from interp.batching import encode_all
from interp.eval.coherence import CoherenceJudge
from interp.persona import extract as px
from interp.persona.rollouts import generate_rollouts, rollout_cells
from interp.persona.spec import load_spec
from interp.positions import LAST
from interp.runs.sweeps import grid, run_sweep
from interp.steering.generation import generate

BATCH = 32


def hf_generate_rate(hf: Any, model: interp.Model, chats: list[Any], max_new: int) -> float:
    """New tokens per second of plain HF sampling over `chats` in batches of BATCH."""
    tok = model.tokenizer
    rows = [list(e.ids) for e in encode_all(model, chats)]
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    new = 0
    start = time.perf_counter()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for b in range(0, len(order), BATCH):
        group = [rows[i] for i in order[b : b + BATCH]]
        width = max(len(r) for r in group)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in group])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in group])
        with torch.no_grad():
            out = hf.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=pad,
            )
        for row in out[:, width:].tolist():
            n = len(row)
            if eos in row:
                n = row.index(eos) + 1
            new += n
    return new / (time.perf_counter() - start)


def extraction(model: interp.Model, trait: str, samples: int, root: Path) -> dict[str, Any]:
    spec = load_spec(trait)
    times: dict[str, float] = {}
    start = time.perf_counter()
    rollouts = generate_rollouts(model, spec, root / "rollouts.jsonl", samples=samples)
    times["generation_s"] = time.perf_counter() - start
    new_tokens = sum(r.n_tokens for r in rollouts)
    start = time.perf_counter()
    judge = px.classifier_judge(spec, rollouts, root / "classifier")
    judged = px.judge_rollouts(
        rollouts, spec, judge, CoherenceJudge(model), root / "judgements.jsonl"
    )
    times["judging_s"] = time.perf_counter() - start
    kept, counts = px.paired_filter(judged)
    start = time.perf_counter()
    if kept:
        vectors = px.vectors_from_pairs(model, kept)["response_mean"]
        (root / "vectors").mkdir(exist_ok=True)
        vectors.save(root / "vectors" / f"{trait}_response_mean.safetensors")
    times["capture_s"] = time.perf_counter() - start
    chats = [cell.prompt for cell in rollout_cells(spec, samples=samples)]
    hf = plain_hf(model.source)
    hf_rate = hf_generate_rate(hf, model, chats, 96)
    start = time.perf_counter()
    again = generate(model, chats, max_new_tokens=96, temperature=1.0, batch_size=BATCH, seed=1)
    interp_rate = sum(len(g.tokens) for g in again) / (time.perf_counter() - start)
    return {
        "trait": trait,
        "rollouts": len(rollouts),
        "new_tokens": new_tokens,
        **times,
        "generation_new_tok_s": new_tokens / times["generation_s"],
        "kept_pairs": counts.coherent,
        "filter": counts.describe(),
        "generate_vs_hf": {
            "hf_new_tok_s": hf_rate,
            "interp_new_tok_s": interp_rate,
            "ratio": interp_rate / hf_rate,
        },
    }


def steering_eval(model: interp.Model, trait: str, root: Path) -> dict[str, Any]:
    """One batched sweep vs batch-1 calls per configuration, greedy, same outputs."""
    spec = load_spec(trait)
    vectors = interp.DirectionSet.load(next(root.glob("vectors/*response_mean.safetensors")))
    questions = list(spec.extraction_questions[:5])
    layers, coefs, new = [8, 16], [2.0, 4.0, 8.0], 48
    chats = [[{"role": "user", "content": q}] for q in questions]  # as the HF side below
    cells = grid(chats, vectors, layers, coefs, LAST, "raw")
    start = time.perf_counter()
    store = run_sweep(model, cells, root / "sweep.jsonl", max_new_tokens=new, batch_size=BATCH)
    batched = time.perf_counter() - start
    texts = {
        (r["config"]["prompt_index"], r["config"]["layer"], r["config"]["coef"]): r["tokens"]
        for r in store.records()
    }
    hf = plain_hf(model.source)
    eos = model.tokenizer.eos_token_id
    same = 0
    start = time.perf_counter()
    for q, question in enumerate(questions):
        ids = torch.tensor(
            [list(encode_all(model, [[{"role": "user", "content": question}]])[0].ids)]
        )
        for layer in layers:
            for coef in coefs:
                vector = vectors.at([layer]).vectors[0] * coef

                def hook(module: Any, args: Any, output: Any, v: torch.Tensor = vector) -> Any:
                    hidden = output[0] if isinstance(output, tuple) else output
                    hidden[:, -1, :] += v
                    return output

                handle = hf.model.layers[layer].register_forward_hook(hook)
                with torch.no_grad():
                    out = hf.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=new,
                        do_sample=False,
                        pad_token_id=eos,
                    )
                handle.remove()
                tokens = out[0, ids.shape[1] :].tolist()
                if eos in tokens:  # interp's stored tokens stop before the EOS
                    tokens = tokens[: tokens.index(eos)]
                same += tokens == texts.get((q, layer, coef))
    sequential = time.perf_counter() - start
    return {
        "configurations": len(layers) * len(coefs) * len(questions),
        "sequential_batch1_s": sequential,
        "batched_sweep_s": batched,
        "speedup": sequential / batched,
        "identical_outputs": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trait", default="evil")
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    model = interp.load_model(device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        stages = extraction(model, args.trait, args.samples, root)
        for key, value in stages.items():
            print(f"{key}: {value}")
        sweep = steering_eval(model, args.trait, root) if stages["kept_pairs"] else {}
        print(f"steering sweep: {sweep}")
    record("persona_pipeline", {"extraction": stages, "steering_sweep": sweep})


if __name__ == "__main__":
    main()
