import pytest
import torch

from interp.hooks import hooked


def test_hooks_fire_modify_and_are_removed_even_on_error(tiny):
    ids = torch.tensor([[5, 17, 40, 99]])
    name = tiny.hook_name("resid_post", 1)
    seen = []

    def zero(x, hook):
        seen.append(hook.name)
        return x * 0

    with torch.no_grad():
        clean = tiny.bridge(ids)
        with hooked(tiny, [(name, zero)]):
            zeroed = tiny.bridge(ids)
        assert seen == [name]
        assert not torch.allclose(clean, zeroed)
        assert torch.equal(tiny.bridge(ids), clean)  # removed on exit
        with (
            pytest.raises(RuntimeError, match="boom"),
            hooked(tiny, [(name, lambda x, hook: x * 0)]),
        ):
            raise RuntimeError("boom")
        assert torch.equal(tiny.bridge(ids), clean)  # removed after an exception


def test_other_hooks_survive_and_unknown_names_fail(tiny):
    ids = torch.tensor([[5, 17, 40]])
    point = tiny.hook_points()[tiny.hook_name("resid_post", 0)]
    calls = []
    point.add_hook(lambda x, hook: calls.append(1), dir="fwd")
    try:
        with torch.no_grad():
            with hooked(tiny, [(tiny.hook_name("resid_post", 0), lambda x, hook: None)]):
                tiny.bridge(ids)
            tiny.bridge(ids)
        assert len(calls) == 2  # someone else's hook was left in place
    finally:
        point.remove_hooks("fwd")
    with (
        pytest.raises(ValueError, match=r"no hook point 'blocks\.9\.hook_out'"),
        hooked(tiny, [("blocks.9.hook_out", lambda x, hook: None)]),
    ):
        pass
