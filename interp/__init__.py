"""interp: batched capture, activation arithmetic and steering over TransformerLens bridges.

The data path (see README): `load_model` → `capture` (batched, reduced, cached) → `ops`
(directions, projections, probes) → `DirectionSet` → `interventions` → `generate` (batched) →
results → figures. Experiments are thin recipes over these.
"""

from interp import interventions, ops, positions
from interp.batching import Example
from interp.capture import (
    LAST_TOKEN,
    PROMPT_LAST,
    PROMPT_MEAN,
    RESPONSE_MEAN,
    Activations,
    Reduction,
    capture,
)
from interp.embedded import DEFAULT_MODEL, EMBEDDED
from interp.generation import Generation, generate, next_token_logprobs
from interp.models import Model, ModelNotFound, load_model
from interp.vectors import DirectionSet, VectorMismatch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "LAST_TOKEN",
    "PROMPT_LAST",
    "PROMPT_MEAN",
    "RESPONSE_MEAN",
    "Activations",
    "DirectionSet",
    "Example",
    "Generation",
    "Model",
    "ModelNotFound",
    "Reduction",
    "VectorMismatch",
    "capture",
    "generate",
    "interventions",
    "load_model",
    "next_token_logprobs",
    "ops",
    "positions",
]
