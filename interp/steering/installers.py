"""Install a `Steerer` on a model: on the bridge's hook points, or on the plain HF modules.

The bridge path serves analysis forwards (hook points fire, as in capture); the HF path serves
generation inside `Model.unwrapped()`, where the bridge wrappers are out of the way. Both call
the same `Steerer.apply`, so both edit the same tensor, which tests check.
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


@contextlib.contextmanager
def on_bridge(steerer: Steerer) -> Iterator[None]:
    """Apply `steerer` through the bridge's hook points (for forwards through `model.bridge`)."""

    def make(site: Site, layer: int) -> Callable[..., Tensor]:
        return lambda x, hook: steerer.apply(site, layer, x)

    model = steerer.model
    fwd = [
        (model.hook_name(site, layer), make(site, layer)) for site, layer in steerer.hook_sites()
    ]
    with hooked(model, fwd):
        yield


@contextlib.contextmanager
def on_hf(steerer: Steerer) -> Iterator[None]:
    """Apply `steerer` through torch hooks on the original HF modules (inside `unwrapped()`)."""
    handles = []
    try:
        for site, layer in steerer.hook_sites():
            handles.append(_register_hf_hook(steerer.model, site, layer, steerer.apply))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _original(model: Model, path: str) -> torch.nn.Module:
    component = model.bridge.get_submodule(path)
    original = component._modules.get("_original_component")
    if original is None:
        raise ValueError(
            f"bridge component {path!r} wraps no HF module; cannot steer it on the fast path"
        )
    return original


def _register_hf_hook(
    model: Model, site: Site, layer: int, apply: Callable[[Site, int, Tensor], Tensor]
) -> torch.utils.hooks.RemovableHandle:
    block = f"blocks.{layer}"
    if site == "resid_pre":

        def pre(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (apply(site, layer, args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = apply(site, layer, kwargs["hidden_states"])
            return args, kwargs

        return _original(model, block).register_forward_pre_hook(pre, with_kwargs=True)
    if site == "resid_post":
        path = block
    elif site == "attn_out":
        path = f"{block}.ln1_post" if model.post_norms else f"{block}.attn"
    elif site == "mlp_out":
        path = f"{block}.ln2_post" if model.post_norms else f"{block}.mlp"
    else:
        raise ValueError(f"site {site!r} cannot be steered on the fast path")

    def post(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (apply(site, layer, output[0]), *output[1:])
        return apply(site, layer, output)

    return _original(model, path).register_forward_hook(post)
