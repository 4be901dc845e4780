"""Persona vectors that ship with interp, so a user can steer without extracting first.

`interp/data/persona/vectors/<model>/<trait>_response_mean.safetensors`: the response-mean
vectors (all blocks, resid_post, raw) extracted by `experiments/persona.py` on that embedded
model, with the judges, filter counts and spec digest in their metadata and the `resid_norm`
stat measured on the trait's extraction questions. Users of the paper's code asked for released
vectors (papers.md §1.11, issue #7 there).
"""

from __future__ import annotations

from pathlib import Path

from interp.vectors import DirectionSet

ROOT = Path(__file__).resolve().parent.parent / "data" / "persona" / "vectors"


def shipped_path(trait: str, model: str = "smollm2-135m-instruct") -> Path:
    return ROOT / Path(model).name / f"{trait}_response_mean.safetensors"


def available() -> dict[str, list[str]]:
    """model -> traits with a shipped vector."""
    if not ROOT.exists():
        return {}
    return {
        folder.name: sorted(
            p.name.removesuffix("_response_mean.safetensors")
            for p in folder.glob("*_response_mean.safetensors")
        )
        for folder in sorted(ROOT.iterdir())
        if folder.is_dir()
    }


def load_shipped(trait: str, model: str = "smollm2-135m-instruct") -> DirectionSet:
    """The shipped response-mean vector of `trait` for embedded `model`."""
    path = shipped_path(trait, model)
    if not path.exists():
        have = available()
        listing = "; ".join(f"{m}: {', '.join(t)}" for m, t in have.items()) or "none"
        raise FileNotFoundError(
            f"no shipped persona vector for trait {trait!r} on {Path(model).name!r} (shipped: "
            f"{listing}); extract one with `interp persona extract {trait} -o DIR`"
        )
    return DirectionSet.load(path)
