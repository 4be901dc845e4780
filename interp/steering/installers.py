"""Install a `Steerer` on a model: on the bridge's hook points, or on the plain HF modules.

The bridge path serves analysis forwards (hook points fire, as in capture); the HF path serves
generation inside `Model.unwrapped()`, where the bridge wrappers are out of the way. Both call
the same `Steerer.apply` on the same tensor, which tests check against the HF modules.

Both resolve a site through the bridge's own per-architecture alias (`Model.hook_name`), never a
hand-written table. The HF path then hooks the HF module that the resolved hook point wraps:

| resolved hook point                      | HF hook                                        |
|------------------------------------------|------------------------------------------------|
| `<component>.hook_in`                    | pre-hook on the wrapped module's input         |
| `<component>.hook_out`                   | hook on the wrapped module's (first) output    |
| scaled block (Granite) `hook_attn_out` / | hook on the attention / MLP output `o`: edits  |
| `hook_mlp_out`                           | `o·s` (s = residual_multiplier), as the bridge |

Any other hook point is refused on the fast path rather than editing a different tensor. A site
the architecture does not have (resid_mid on a parallel-residual block) is refused on both paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from interp.hooks import hooked
from interp.models import Model
from interp.sites import Site
from interp.steering.engine import Steerer

Apply = Callable[[Site, int, Tensor], Tensor]


def check_sites(steerer: Steerer) -> None:
    """Refuse edits at a site the model does not have (e.g. resid_mid on GPT-NeoX)."""
    for site, layer in steerer.ops:
        steerer.model.hook_name(site, layer)  # raises with the reason and the sites there are


@contextlib.contextmanager
def on_bridge(steerer: Steerer) -> Iterator[None]:
    """Apply `steerer` through the bridge's hook points (for forwards through `model.bridge`)."""

    def make(site: Site, layer: int) -> Callable[..., Tensor]:
        return lambda x, hook: steerer.apply(site, layer, x)

    check_sites(steerer)
    model = steerer.model
    fwd = [
        (model.hook_name(site, layer), make(site, layer)) for site, layer in steerer.hook_sites()
    ]
    with hooked(model, fwd):
        yield


@contextlib.contextmanager
def on_hf(steerer: Steerer) -> Iterator[None]:
    """Apply `steerer` through torch hooks on the original HF modules (inside `unwrapped()`).

    Enter it before `Model.unwrapped()`: the modules are found through the bridge.
    """
    check_sites(steerer)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for site, layer in steerer.hook_sites():
            handles.append(_register_hf_hook(steerer.model, site, layer, steerer.apply))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _original(model: Model, component: Any, path: str) -> torch.nn.Module:
    original = component._modules.get("_original_component")
    if original is None:
        raise ValueError(
            f"bridge component {path!r} of {model.name} wraps no HF module, so its hook cannot "
            "be placed on the fast (generation) path; steer this site in an analysis forward "
            "(next_token_logprobs) instead"
        )
    return original


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, value: Tensor) -> Any:
    return (value, *output[1:]) if isinstance(output, tuple) else value


def _register_hf_hook(
    model: Model, site: Site, layer: int, apply: Apply
) -> torch.utils.hooks.RemovableHandle:
    name = model.hook_name(site, layer)
    path, _, hook = name.rpartition(".")
    component = model.bridge.get_submodule(path)
    if hook == "hook_in":
        module = _original(model, component, path)

        def pre(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (apply(site, layer, args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = apply(site, layer, kwargs["hidden_states"])
            return args, kwargs

        return module.register_forward_pre_hook(pre, with_kwargs=True)
    if hook == "hook_out":
        module = _original(model, component, path)

        def post(module: torch.nn.Module, args: Any, output: Any) -> Any:
            return _replace_first(output, apply(site, layer, _first(output)))

        return module.register_forward_hook(post)
    scaled = _scaled_submodule(component, hook)
    if scaled is not None:
        sub_name, scale = scaled
        module = _original(model, component.submodules[sub_name], f"{path}.{sub_name}")

        def scaled_post(module: torch.nn.Module, args: Any, output: Any) -> Any:
            # HF adds o·s to the residual; edit that contribution, then hand HF back o + Δ/s
            # (exactly o where nothing was edited)
            raw = _first(output)
            contribution = raw * scale
            edited = apply(site, layer, contribution)
            if edited is contribution:
                return None
            return _replace_first(output, raw + (edited - contribution) / scale)

        return module.register_forward_hook(scaled_post)
    raise ValueError(
        f"site {site!r} at block {layer} of {model.name} resolves to the bridge hook {name!r}, "
        "which has no HF module that produces exactly that tensor; it cannot be steered on the "
        "fast (generation) path. Steer it in an analysis forward (next_token_logprobs) or pick "
        f"another site ({', '.join(model.available_sites(layer))})"
    )


def _scaled_submodule(block: Any, hook: str) -> tuple[str, float] | None:
    """For a block that scales a sublayer's output before the residual add (Granite's
    `ScaledResidualBlockBridge`): the submodule behind `hook` and the scale, else None."""
    scale = getattr(block, "residual_contribution_scale", None)
    if scale is None:
        return None
    sub = {
        "hook_attn_out": getattr(block, "scaled_attn_submodule", None),
        "hook_mlp_out": getattr(block, "scaled_mlp_submodule", None),
    }.get(hook)
    if sub is None or sub not in (block.submodules or {}):
        return None
    return sub, float(scale)
