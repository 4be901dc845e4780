import pytest

from interp.sites import (
    SITES,
    from_hidden_states,
    hook_alias,
    parse_layer_ranges,
    to_hidden_states,
)


def test_sites_name_the_bridges_per_architecture_aliases():
    # resolved against a model by Model.hook_name (tests/unit/test_sites_arch.py)
    assert [hook_alias(s, 3) for s in SITES] == [
        "blocks.3.hook_resid_pre",
        "blocks.3.hook_resid_mid",
        "blocks.3.hook_resid_post",
        "blocks.3.hook_attn_out",
        "blocks.3.hook_mlp_out",
    ]


def test_unknown_site_lists_valid_ones():
    with pytest.raises(ValueError, match="resid_pre, resid_mid, resid_post"):
        hook_alias("resid", 0)


def test_hidden_states_convention_round_trips():
    # hidden_states[0] is the embeddings (= resid_pre of block 0); [i] is resid_post of block i-1
    assert from_hidden_states(0, 30) == (0, "resid_pre")
    assert from_hidden_states(20, 30) == (19, "resid_post")
    assert from_hidden_states(30, 30) == (29, "resid_post")
    for index in range(1, 31):
        assert to_hidden_states(*from_hidden_states(index, 30)) == index
    with pytest.raises(ValueError, match=r"out of range.*0–30"):
        from_hidden_states(31, 30)
    with pytest.raises(ValueError, match="no hidden_states index"):
        to_hidden_states(4, "attn_out")
    assert len(SITES) == 5


def test_layer_ranges_parse_and_a_backwards_range_is_refused():
    assert parse_layer_ranges("10-20,3") == [(10, 20), (3, 3)]
    assert parse_layer_ranges("-3--1") == [(-3, -1)]
    assert parse_layer_ranges("2-2") == [(2, 2)]
    # mixed signs depend on the depth: Model.layers checks them
    assert parse_layer_ranges("3--1") == [(3, -1)]
    # "5-2" used to give no layers at all (range(5, 3) is empty), so later errors were vague
    with pytest.raises(ValueError, match=r"'5-2'.*runs backwards.*'2-5'"):
        parse_layer_ranges("1,5-2")
    with pytest.raises(ValueError, match=r"'-1--3'.*'-3--1'"):
        parse_layer_ranges("-1--3")
