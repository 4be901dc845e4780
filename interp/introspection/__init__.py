"""Concept injection and introspection (Lindsey 2025, "Emergent Introspective Awareness").

- `words`: the published word lists (50 concepts, 100 baseline words), shipped as data.
- `concepts`: concept vectors (last token before the reply, minus the baseline mean) and
  contrast-pair vectors, with the three injection scales.
- `trials`: the detection protocol's chat, the injection span and the batched trial grid with
  its control trials.

Grading, metrics, the variants and the figures are still to come (issue 10).
"""
