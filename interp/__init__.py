"""interp: batched capture, activation arithmetic and steering over TransformerLens bridges.

The data path (see README): `load_model` → `capture` (batched, reduced, cached) → `ops`
(directions, projections, probes) → `DirectionSet` → `interventions` → `generate` (batched) →
results → figures. Experiments are thin recipes over these.

Names are imported lazily (PEP 562), so `import interp` and `interp --help` do not load torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (a module itself when the name is the module's own)
_EXPORTS: dict[str, str] = {
    "DEFAULT_MODEL": "interp.embedded",
    "EMBEDDED": "interp.embedded",
    "LAST_TOKEN": "interp.capture",
    "PROMPT_LAST": "interp.capture",
    "PROMPT_MEAN": "interp.capture",
    "RESPONSE_MEAN": "interp.capture",
    "Activations": "interp.capture",
    "Reduction": "interp.capture",
    "capture": "interp.capture",
    "DirectionSet": "interp.vectors",
    "VectorMismatch": "interp.vectors",
    "Example": "interp.batching",
    "Generation": "interp.steering.generation",
    "generate": "interp.steering.generation",
    "next_token_logprobs": "interp.steering.generation",
    "Model": "interp.models",
    "ModelNotFound": "interp.models",
    "load_model": "interp.models",
    "interventions": "interp.steering.interventions",
    "ops": "interp.ops",
    "positions": "interp.positions",
}

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

if TYPE_CHECKING:
    from interp import ops, positions
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
    from interp.models import Model, ModelNotFound, load_model
    from interp.steering import interventions
    from interp.steering.generation import Generation, generate, next_token_logprobs
    from interp.vectors import DirectionSet, VectorMismatch


_MODULES = {"interventions", "ops", "positions"}  # exported names that are modules


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


class _Root(types.ModuleType):
    """The package module: importing the submodule `interp.capture` must not hide the function.

    Python binds a submodule as an attribute of its package when it is first imported, which
    would make `interp.capture` the module rather than the `capture` function it exports.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS and name not in _MODULES:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Root


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
