import pytest
import torch

from interp.batching import Example, TokenView, encode_all, make_batch
from interp.positions import (
    ALL,
    FIRST,
    LAST,
    LAST_PROMPT,
    PROMPT,
    RESPONSE,
    Explicit,
    FromMarker,
    Index,
    Matching,
    Span,
    parse,
)


@pytest.fixture()
def view(tiny):
    rows = encode_all(
        tiny, [Example("Tell me about the ocean.", " Wait, let me check."), Example("Hi", " Yes")]
    )
    return make_batch(rows, tiny.tokenizer.pad_token_id, "left").view(tiny), rows


def picks(sel, view):
    """Logical indices (0 = first real token) that `sel` selects, per row."""
    mask = sel.mask(view)
    assert not (mask & ~view.real).any(), "a selector picked a padding position"
    return [sorted(view.index[r][mask[r]].tolist()) for r in range(mask.shape[0])]


def test_named_selectors_on_a_padded_batch(view):
    v, rows = view
    n0, p0 = len(rows[0]), rows[0].prompt_len
    n1, p1 = len(rows[1]), rows[1].prompt_len
    assert picks(ALL, v) == [list(range(n0)), list(range(n1))]
    assert picks(PROMPT, v) == [list(range(p0)), list(range(p1))]
    assert picks(RESPONSE, v) == [list(range(p0, n0)), list(range(p1, n1))]
    assert picks(LAST_PROMPT, v) == [[p0 - 1], [p1 - 1]]
    assert picks(LAST, v) == [[n0 - 1], [n1 - 1]]
    assert picks(FIRST, v) == [[0], [0]]
    assert picks(Index(-2), v) == [[n0 - 2], [n1 - 2]]
    assert picks(RESPONSE | LAST_PROMPT, v) == [list(range(p0 - 1, n0)), list(range(p1 - 1, n1))]
    assert picks(ALL & ~FIRST, v) == [list(range(1, n0)), list(range(1, n1))]


def test_marker_and_pattern_selectors(view, tiny):
    v, rows = view
    start = rows[0].find("Wait")
    one = make_batch(rows[:1], tiny.tokenizer.pad_token_id, "left").view(tiny)
    assert picks(FromMarker("Wait") & RESPONSE, one)[0] == list(range(start, len(rows[0])))
    end = rows[0].find("let me", anchor="end")
    assert picks(FromMarker("let me", "end"), one)[0] == list(range(end, len(rows[0])))
    with pytest.raises(ValueError, match="example 1: marker 'Wait' not found"):
        FromMarker("Wait").mask(v)
    comma = picks(Matching(r"^,$"), v)
    assert [tiny.tokenizer.decode([rows[0].ids[i]]) for i in comma[0]] == [","]
    assert comma[1] == []


def test_span_selects_the_tokens_of_its_text_and_nothing_in_a_row_without_it(view, tiny):
    v, rows = view
    first, last = rows[0].find("the ocean"), rows[0].find("the ocean", anchor="end")
    assert first < last
    assert picks(Span("the ocean"), v) == [list(range(first, last + 1)), []]  # no raise on row 1
    assert picks(Span("the ocean") | LAST, v) == [
        sorted({*range(first, last + 1), len(rows[0]) - 1}),
        [len(rows[1]) - 1],
    ]
    assert picks(Span("the ocean") & ~Index(first), v)[0] == list(range(first + 1, last + 1))
    assert picks(Span("e", last=True), v)[0] == [rows[0].find("e", last=True)]
    with pytest.raises(ValueError, match="non-empty text"):
        Span("")


def test_selectors_in_decoding_steps(tiny):
    """During generation the view is one new token per row; the same selectors still apply."""
    rows = encode_all(tiny, ["Tell me about the ocean.", "Hi, the ocean"])
    n = [len(r) for r in rows]
    # a decode step: each row's new token sits right after its prompt (+ 2 earlier new tokens)
    index = torch.tensor([[n[0] + 2], [n[1] + 2]])
    ids = torch.tensor([[5], [6]])
    step = TokenView(ids, index, rows, [0, 1], tiny)
    assert RESPONSE.mask(step).all() and not PROMPT.mask(step).any()
    assert LAST.mask(step).all() and not LAST_PROMPT.mask(step).any()
    assert (RESPONSE | LAST_PROMPT).mask(step).all()
    assert FromMarker("ocean").mask(step).all()
    assert not Span("ocean").mask(step).any()  # new tokens come after the prompt's text


def test_explicit_masks_follow_example_ids(tiny):
    rows = encode_all(tiny, ["Hi there", "Hi"])
    v = make_batch(rows, tiny.tokenizer.pad_token_id, "right", example_ids=[1, 0]).view(tiny)
    sel = Explicit.of([[True, False, True], [False, True]])
    # row 0 is example 1, row 1 is example 0
    assert picks(sel, v)[0] == [1]
    assert picks(sel, v)[1] == [i for i in (0, 2) if i < len(rows[1])]


@pytest.mark.parametrize(
    "spec",
    [
        "response",
        "(response|last_prompt)",
        "(all&!first)",
        'from("\\n\\nTrial 1")',
        'from("Paris",end,last)',
        'match("\\\\n\\\\n")',
        "index(-2)",
        "((prompt&!first)|last)",
        'span("Snowflakes drifted, \\"lazily\\".")',
        'span("the ocean",last)',
        '(span("\\n\\nTrial 1")&!last)',
    ],
)
def test_specs_round_trip(spec):
    assert str(parse(spec)) == spec
    assert parse(str(parse(spec))) == parse(spec)


def test_parse_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"expected a selector.*Valid: all, prompt"):
        parse("responses")
    with pytest.raises(ValueError, match="missing '\\)'"):
        parse("(prompt|response")
    with pytest.raises(ValueError, match="unknown from\\(\\) flags"):
        parse('from("x",middle)')
    with pytest.raises(ValueError, match="unknown span\\(\\) flags"):
        parse('span("x",end)')


@pytest.mark.parametrize("selector", [Span('Hi, "you"\n'), Span("x", last=True), ~Span("a")])
def test_span_round_trips_through_parse(selector):
    assert parse(str(selector)) == selector
    assert str(parse(str(selector))) == str(selector)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_prompt_selects_nothing_when_the_prompt_is_empty(tiny, side):
    """An empty prompt has no last prompt token: nothing is selected, never a pad token."""
    rows = encode_all(tiny, [Example("", " Yes"), Example("Tell me about the ocean.")])
    assert rows[0].prompt_len == 0 and len(rows[0]) < len(rows[1])  # row 0 is padded
    v = make_batch(rows, tiny.tokenizer.pad_token_id, side).view(tiny)
    assert picks(LAST_PROMPT, v) == [[], [rows[1].prompt_len - 1]]
    assert picks(RESPONSE | LAST_PROMPT, v) == [list(range(len(rows[0]))), [len(rows[1]) - 1]]
