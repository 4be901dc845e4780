"""Float comparisons bounded relative to the magnitude of what is compared.

Two computations of one float32 quantity agree to rounding, and rounding scales with the
numbers: about eps (1.2e-7) times their magnitude, times how many operations they went through.
Which kernels run depends on the CPU (AVX2, AVX-512, AMX) and, for matmuls, on the batch shape,
so a fixed absolute bound that holds on one machine fails on another (a 2.4e-5 difference in
activations of magnitude ~10 failed `atol=1e-5` on an AMX Xeon). Here the bound is a fraction
of the largest magnitude compared: max |got - want| <= rel * max |want|.

The default `FP32` (1e-5, about 80 float32 epsilons of the largest value) covers rounding
through a small model's forward pass on any of those CPUs; a bug (a wrong position, a pad token
attended to, an edit applied twice or in the wrong order) moves values by 1e-3 to 1 of their
magnitude, 100 times the bound or more.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

FP32 = 1e-5  # float32 rounding through a forward pass, relative to the largest magnitude
FP32_OP = 1e-6  # one float32 operation or a short reduction (a projection, a mean, a norm)
BF16 = 2**-7  # one bfloat16 rounding (8 bits of mantissa)


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def relative_error(got: Any, want: Any) -> float:
    """max |got - want| / max |want| (the plain difference where want is all zeros)."""
    g, w = _tensor(got), _tensor(want)
    if g.shape != w.shape:
        raise AssertionError(f"shapes differ: got {tuple(g.shape)}, want {tuple(w.shape)}")
    if g.numel() == 0:
        return 0.0
    diff = float((g - w).abs().max())
    scale = float(w.abs().max())
    return diff / scale if scale > 0 else diff


def assert_close(got: Any, want: Any, *, rel: float = FP32, what: str = "") -> None:
    """Fail unless max |got - want| <= rel * max |want|; the message gives both numbers."""
    err = relative_error(got, want)
    if not err <= rel:  # also catches NaN
        scale = float(_tensor(want).abs().max()) if _tensor(want).numel() else 0.0
        label = f"{what}: " if what else ""
        raise AssertionError(
            f"{label}max |got - want| is {err:.3g} of max |want| ({scale:.4g}); "
            f"the bound is {rel:.3g}"
        )
