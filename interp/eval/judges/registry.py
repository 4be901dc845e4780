"""Judges by name: `make_judge("api:MODEL" | "local:ALIAS_OR_PATH" | "classifier:PATH")`.

The one place where a judge spec (as the CLI takes it) becomes a judge object. Each backend is
imported only when asked for, so naming an API judge never loads torch.

- `api:MODEL`: `ApiJudge` on an OpenAI-compatible server (`api` or `api:` alone: the model from
  INTERP_JUDGE_MODEL, or the server's only model); URL and key from the environment.
- `local:ALIAS_OR_PATH`: `LocalJudge` on a model `load_model` accepts (an embedded alias, a
  local Hugging Face directory or a Hub id).
- `classifier:PATH`: a saved `ClassifierJudge` directory.
"""

from __future__ import annotations

from typing import Any

KINDS = {
    "api": "api:MODEL (an OpenAI-compatible server)",
    "local": "local:ALIAS_OR_PATH (a model load_model accepts)",
    "classifier": "classifier:PATH (a saved classifier judge directory)",
}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a judge spec into (kind, target); errors name the spec and the kinds."""
    kind, _, target = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(
            f"unknown judge kind {kind!r} in {spec!r}; use one of: {'; '.join(KINDS.values())}"
        )
    target = target.strip()
    if kind != "api" and not target:
        raise ValueError(f"judge {spec!r} names no {kind} target; write {KINDS[kind]}")
    return kind, target


def make_judge(spec: str, *, device: str | None = None, batch_size: int = 16) -> Any:
    """The judge a spec names (see module docstring); `device` applies to local judges."""
    kind, target = parse_spec(spec)
    if kind == "api":
        from interp.eval.judges.api import ApiJudge

        return ApiJudge(model=target or None)
    if kind == "classifier":
        from interp.eval.judges.classifier import ClassifierJudge

        return ClassifierJudge.load(target, device=device or "cpu")
    from interp.eval.judges.local import LocalJudge
    from interp.models import load_model

    model = load_model(target, device=device)
    return LocalJudge(model, batch_size=batch_size)
