"""Concept injection and introspection (Lindsey 2025, "Emergent Introspective Awareness").

Data and protocol:
- `words`: the published word lists (50 concepts, 100 baseline words, 5 categories, 50
  sentences, 100 control words, 20 no-questions), shipped as data.
- `concepts`: concept vectors (last token before the reply, minus the baseline mean) and
  contrast-pair vectors, with the three injection scales (raw, unit × norm, resid_norm).
- `trials`: the detection protocol's chat, the injection span and the batched trial grid with
  its control trials.

Grading and metrics:
- `rules` and `grading`: the four criteria (coherent, affirmative, identified, thinking) from a
  transparent rule grader or any judge; `grade_trials` turns stored trials into a frame.
- `metrics`: success, false positives, net score and influence, with bootstrap 95% CIs.

Variants: `thoughts_text` (thoughts vs text), `prefill` (prefill intention), `intent`
(intentional control), `yes_no` (no-questions under injection and the judge-free logit score).

`figures` draws every figure from saved results; `interp inject` is the CLI and
`experiments/introspection.py` runs it all on one model.
"""
