"""The injected-thought detection sweep on the default embedded model, against plain HF generate.

1. Concept vectors for the 50 published concepts against the 100 baseline words, every block
   (timed apart).
2. The detection sweep of issue 10 from an empty run store: 50 concepts × strengths {1, 2, 4,
   8, 16} × layer fractions {0.33, 0.5, 0.67, 0.83}, plus as many control trials per cell
   (2,000 trials), 40 new tokens at temperature 1, batch 32, each row with its own concept,
   block and strength through the steering engine, each trial stored as it finishes. Goal
   (issue 10): within 20 minutes on 2 CPU cores.
3. Plain HF `generate` on the same prompt (every trial asks the same detection chat) at the
   same batch size, left-padded, `do_sample=True, temperature=1, top_k=0`, no injection, in
   the same process: new tokens per second (a row's new tokens count up to and including its
   EOS, as interp's do). `--hf-rows` rows (default 512: 16 batches; the rate is per token).

`python -m benchmarks.injection_sweep [--concepts 50] [--hf-rows 512]`; a smaller grid
(`--concepts 2 --strengths 4 --fractions 0.5`) checks the script without writing the record
(`--no-record`).
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
from interp.introspection.concepts import extract_concepts
from interp.introspection.trials import (
    FRACTIONS,
    STRENGTHS,
    detection_chat,
    run_trials,
    trial_cells,
)
from interp.introspection.words import word_list

BATCH = 32
NEW_TOKENS = 40
GOAL_S = 20 * 60


def hf_rate(hf: Any, model: interp.Model, rows: int, batch: int, max_new: int) -> dict[str, Any]:
    """New tokens per second of plain HF sampling of the detection chat, `rows` rows."""
    tok = model.tokenizer
    (encoded,) = encode_all(model, [detection_chat()])
    ids = list(encoded.ids)
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    warm = torch.tensor([ids])
    with torch.no_grad():  # one short untimed call: first-call setup is not the rate
        hf.generate(warm, attention_mask=torch.ones_like(warm), max_new_tokens=2, do_sample=False)
    new = 0
    torch.manual_seed(0)
    start = time.perf_counter()
    for b in range(0, rows, batch):
        n = min(batch, rows - b)
        inputs = torch.tensor([ids] * n)
        with torch.no_grad():
            out = hf.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=pad,
            )
        for row in out[:, len(ids) :].tolist():
            new += row.index(eos) + 1 if eos in row else len(row)
    seconds = time.perf_counter() - start
    return {"rows": rows, "new_tokens": new, "seconds": seconds, "new_tok_s": new / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=interp.DEFAULT_MODEL)
    parser.add_argument("--concepts", type=int, default=50, help="first N published concepts")
    parser.add_argument("--strengths", default=",".join(f"{s:g}" for s in STRENGTHS))
    parser.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    parser.add_argument("--max-new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--hf-rows", type=int, default=512)
    parser.add_argument("--no-record", action="store_true", help="print only (checks)")
    args = parser.parse_args()
    model = interp.load_model(args.model, device="cpu")
    words = list(word_list("concepts")[: args.concepts])
    strengths = [float(s) for s in args.strengths.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]

    start = time.perf_counter()
    concepts = extract_concepts(model, words)
    vectors_s = time.perf_counter() - start
    cells = trial_cells(model, concepts, words, fractions=fractions, strengths=strengths)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        records = run_trials(
            model,
            cells,
            Path(scratch) / "trials.jsonl",
            max_new_tokens=args.max_new_tokens,
            temperature=1.0,
            seed=0,
            batch_size=args.batch_size,
            progress=False,
        )
        sweep_s = time.perf_counter() - start
    # interp's stored tokens stop before the EOS: count it, as the HF side does
    new = sum(len(r["tokens"]) + (r["finish"] == "eos") for r in records)
    sweep = {
        "trials": len(records),
        "injected": sum(r["config"]["trial"] == "injected" for r in records),
        "new_tokens": new,
        "seconds": sweep_s,
        "new_tok_s": new / sweep_s,
        "within_goal": sweep_s <= GOAL_S,
    }
    hf = plain_hf(model.source)
    rows = min(args.hf_rows, len(records))
    baseline = hf_rate(hf, model, rows, args.batch_size, args.max_new_tokens)
    ratio = sweep["new_tok_s"] / baseline["new_tok_s"]
    print(f"concept vectors ({len(words)} + 100 baseline words, every block): {vectors_s:.1f} s")
    print(
        f"sweep: {sweep['trials']} trials ({sweep['injected']} injected) × {args.max_new_tokens} "
        f"new tokens at batch {args.batch_size}: {sweep_s:.1f} s "
        f"(goal ≤ {GOAL_S} s: {'met' if sweep['within_goal'] else 'MISSED'}), "
        f"{sweep['new_tok_s']:.1f} new tok/s"
    )
    print(
        f"plain HF generate, {rows} rows of the same prompt: {baseline['new_tok_s']:.1f} new "
        f"tok/s; ratio interp / HF = {ratio:.2f}"
    )
    if not args.no_record:
        record(
            "injection_sweep",
            {
                "model": args.model,
                "grid": {
                    "concepts": len(words),
                    "strengths": strengths,
                    "fractions": fractions,
                    "controls_per_cell": len(words),
                    "max_new_tokens": args.max_new_tokens,
                    "batch_size": args.batch_size,
                    "temperature": 1.0,
                },
                "vectors_s": vectors_s,
                "sweep": sweep,
                "hf_generate": baseline,
                "ratio": ratio,
            },
        )


if __name__ == "__main__":
    main()
