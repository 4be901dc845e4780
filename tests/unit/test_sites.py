import pytest

from interp.sites import SITES, from_hidden_states, hook_name, to_hidden_states


def test_hook_names_are_canonical_bridge_names():
    assert hook_name("resid_pre", 3) == "blocks.3.hook_in"
    assert hook_name("resid_post", 3) == "blocks.3.hook_out"
    assert hook_name("resid_mid", 3) == "blocks.3.ln2.hook_in"
    assert hook_name("attn_out", 3) == "blocks.3.attn.hook_out"
    assert hook_name("mlp_out", 3) == "blocks.3.mlp.hook_out"
    # post-norm blocks (Gemma 2/3): what enters the residual is the post-norm output
    assert hook_name("attn_out", 3, post_norms=True) == "blocks.3.ln1_post.hook_out"
    assert hook_name("mlp_out", 3, post_norms=True) == "blocks.3.ln2_post.hook_out"


def test_unknown_site_lists_valid_ones():
    with pytest.raises(ValueError, match="resid_pre, resid_mid, resid_post"):
        hook_name("resid", 0)


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
