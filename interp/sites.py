"""Layer and site naming: one convention for the whole toolkit.

`layer = l` is TransformerLens block `l` (0-based). A *site* names where in that block an
activation lives, and means the same tensor on every architecture:

| site       | what it is                                                               |
|------------|--------------------------------------------------------------------------|
| resid_pre  | residual stream entering block l                                         |
| attn_out   | what attention adds into the residual (after a post-norm, after a scale) |
| resid_mid  | residual after the attention add, before the MLP (none on parallel       |
|            | blocks)                                                                  |
| mlp_out    | what the MLP adds into the residual (after a post-norm, after a scale)   |
| resid_post | residual stream leaving block l                                          |

So `resid_mid = resid_pre + attn_out` and `resid_post = resid_mid + mlp_out` (on a parallel
block, `resid_post = resid_pre + attn_out + mlp_out`).

A site is never mapped by a hand-written table: `hook_alias(site, l)` is the bridge's own
per-architecture alias `blocks.{l}.hook_{site}`, and `Model.hook_name` resolves it to the hook
point the architecture adapter points it at. That is how post-norm blocks (Gemma 2/3: `ln1_post`;
OLMo-2: `ln1`, with resid_mid at `mlp.hook_in`) report the *normed* output, scaled blocks
(Granite) report `output × residual_multiplier`, and parallel-residual blocks (GPT-NeoX/Pythia,
GPT-J, Phi) have no resid_mid at all, which `Model.hook_name` refuses.

Papers often say "layer i" for Hugging Face `hidden_states[i]`. `hidden_states[0]` is the
embedding output (= resid_pre of block 0) and `hidden_states[i]` for i >= 1 is resid_post of
block i-1. (HF applies the final norm to the last entry; we never do.)
"""

from __future__ import annotations

import re
from typing import Literal, cast, get_args

Site = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
SITES: tuple[Site, ...] = get_args(Site)

# Order in which a block's sites are computed; used to find the last hook a forward needs.
SITE_ORDER: dict[Site, int] = {
    "resid_pre": 0,
    "attn_out": 1,
    "resid_mid": 2,
    "mlp_out": 3,
    "resid_post": 4,
}

LAYER_CONVENTION = "transformer_lens_block"  # recorded in metadata of everything we save


def check_site(site: str) -> Site:
    """Return `site` if it is a known site name, else raise with the valid names."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")
    return cast(Site, site)


def hook_alias(site: str, layer: int) -> str:
    """The bridge's per-architecture alias for `site` in block `layer`: `blocks.{l}.hook_{site}`.

    Resolve it against a model with `Model.hook_name`; the alias is absent where the
    architecture has no such tensor (resid_mid on parallel-residual blocks).
    """
    return f"blocks.{layer}.hook_{check_site(site)}"


def from_hidden_states(index: int, n_layers: int) -> tuple[int, Site]:
    """Map a Hugging Face `hidden_states` index (the papers' "layer") to (block, site)."""
    if not 0 <= index <= n_layers:
        raise ValueError(
            f"hidden_states index {index} is out of range for a {n_layers}-layer model "
            f"(valid: 0–{n_layers}; 0 is the embeddings)"
        )
    if index == 0:
        return 0, "resid_pre"
    return index - 1, "resid_post"


def to_hidden_states(layer: int, site: Site) -> int:
    """Inverse of `from_hidden_states` for the two residual sites it can express."""
    if site == "resid_post":
        return layer + 1
    if site == "resid_pre":
        return layer
    raise ValueError(f"site {site!r} has no hidden_states index; only resid_pre and resid_post do")


_LAYER_PART = re.compile(r"(?P<lo>-?\d+)(?:-(?P<hi>-?\d+))?")


def parse_layer_ranges(spec: str) -> list[tuple[int, int]]:
    """Split "10-20,3" into inclusive (lo, hi) pairs; bounds may be negative (from the end).

    A range whose bounds have the same sign must go upwards ("5-2" is refused); a range that
    mixes signs ("3--1") is checked once the model's depth is known (`Model.layers`).
    """
    ranges = []
    for part in spec.split(","):
        match = _LAYER_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"cannot parse layers {spec!r}: use 'all', '10-20', '3,7,9' or ints")
        lo = int(match["lo"])
        hi = int(match["hi"]) if match["hi"] else lo
        if (lo < 0) == (hi < 0) and lo > hi:
            raise ValueError(
                f"layer range {part.strip()!r} in {spec!r} runs backwards; write it low to high: "
                f"'{hi}-{lo}'"
            )
        ranges.append((lo, hi))
    return ranges
