"""interp: batched capture, activation arithmetic and steering over TransformerLens bridges.

The data path (see README): `load_model` → `capture` (batched, reduced, cached) → `ops`
(directions, projections, probes) → figures. Experiments are thin recipes over these.
"""

from interp.batching import Example
from interp.capture import Activations, Reduction, capture
from interp.embedded import DEFAULT_MODEL, EMBEDDED
from interp.models import Model, ModelNotFound, load_model

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "Activations",
    "Example",
    "Model",
    "ModelNotFound",
    "Reduction",
    "capture",
    "load_model",
]
