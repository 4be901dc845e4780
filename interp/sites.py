"""Layer and site naming: one convention for the whole toolkit.

`layer = l` is TransformerLens block `l` (0-based). A *site* names where in that block an
activation lives. Sites map to the bridge's canonical hook names (never legacy cache keys):

| site        | bridge hook                       | what it is                              |
|-------------|-----------------------------------|-----------------------------------------|
| resid_pre   | blocks.{l}.hook_in                | residual stream entering block l        |
| resid_mid   | blocks.{l}.ln2.hook_in            | residual after attention, before MLP    |
| resid_post  | blocks.{l}.hook_out               | residual stream leaving block l         |
| attn_out    | blocks.{l}.attn.hook_out          | attention's write into the residual     |
| mlp_out     | blocks.{l}.mlp.hook_out           | the MLP's write into the residual       |

Models with post-sublayer norms (Gemma 2/3) add `ln1_post` / `ln2_post` after attention and MLP;
for them attn_out / mlp_out are the outputs of those norms, since that is what enters the residual.

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


def hook_name(site: str, layer: int, *, post_norms: bool = False) -> str:
    """Canonical bridge hook name of `site` in block `layer`."""
    check_site(site)
    prefix = f"blocks.{layer}"
    if site == "resid_pre":
        return f"{prefix}.hook_in"
    if site == "resid_post":
        return f"{prefix}.hook_out"
    if site == "resid_mid":
        return f"{prefix}.ln2.hook_in"
    if site == "attn_out":
        return f"{prefix}.ln1_post.hook_out" if post_norms else f"{prefix}.attn.hook_out"
    return f"{prefix}.ln2_post.hook_out" if post_norms else f"{prefix}.mlp.hook_out"


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
    """Split "10-20,3" into inclusive (lo, hi) pairs; bounds may be negative (from the end)."""
    ranges = []
    for part in spec.split(","):
        match = _LAYER_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"cannot parse layers {spec!r}: use 'all', '10-20', '3,7,9' or ints")
        lo = int(match["lo"])
        ranges.append((lo, int(match["hi"]) if match["hi"] else lo))
    return ranges
