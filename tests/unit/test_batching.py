import pytest
import torch

from interp.batching import (
    Encoded,
    Example,
    as_example,
    encode,
    encode_all,
    length_sorted_batches,
    make_batch,
)


def test_prompt_and_response_are_tokenized_apart(tiny):
    # jointly, the trailing space of the prompt merges with "(" ("Ġ(") and the boundary moves
    row = encode(tiny, Example(prompt="Answer: ", response="(A)"))
    prompt_ids = tiny.tokenizer("Answer: ", add_special_tokens=True)["input_ids"]
    response_ids = tiny.tokenizer("(A)", add_special_tokens=False)["input_ids"]
    assert list(row.ids) == prompt_ids + response_ids
    assert row.prompt_len == len(prompt_ids)
    joint = tiny.tokenizer("Answer: (A)")["input_ids"]
    assert joint[: row.prompt_len] != prompt_ids  # what joint tokenization would have done
    # spans index the joined text
    for tid, (s, e) in zip(row.ids, row.spans, strict=True):
        if e > s:
            assert tiny.tokenizer.decode([tid]) == row.text[s:e]


def test_chat_prompts_use_the_template_without_double_bos(tiny, tiny_base):
    chat = [{"role": "user", "content": "Hi"}]
    row = encode(tiny, Example(prompt=chat, response="Hello"))
    assert row.text == "<|user|>Hi<|end|>\n<|assistant|>Hello"
    base = encode(tiny_base, Example(prompt=chat))
    assert base.ids[0] == tiny_base.tokenizer.bos_token_id  # fallback format gets BOS once
    assert list(base.ids).count(tiny_base.tokenizer.bos_token_id) == 1


def test_as_example_formats_and_errors():
    assert as_example("hi") == Example("hi")
    assert as_example({"prompt": "q", "response": "a"}) == Example("q", "a")
    assert as_example({"text": "t"}) == Example("t")
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert as_example({"messages": msgs}) == Example([msgs[0]], "a")
    assert as_example(msgs) == Example([msgs[0]], "a")
    assert as_example(msgs[:1]) == Example(msgs[:1])
    with pytest.raises(ValueError, match="example 7 is not"):
        as_example({"foo": 1}, 7)


def test_empty_inputs_are_errors(tiny):
    with pytest.raises(ValueError, match="input is empty"):
        encode_all(tiny, [])


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_masks_and_positions(tiny, side):
    rows = encode_all(tiny, ["Tell me about the ocean and the mountains.", "Hi"])
    batch = make_batch(rows, tiny.tokenizer.pad_token_id, side)
    for i, row in enumerate(rows):
        real = batch.attention_mask[i].bool()
        assert real.sum() == len(row)
        assert batch.input_ids[i][real].tolist() == list(row.ids)
        assert batch.position_ids[i][real].tolist() == list(range(len(row)))
    short = batch.attention_mask[1]
    assert (short[0] == 0) if side == "left" else (short[-1] == 0)
    view = batch.view(tiny)
    assert (view.index[~batch.attention_mask.bool()] == -1).all()


def test_find_marker(tiny):
    row = encode(tiny, Example(prompt="Intro.\n\nTrial 1: Do you detect an injected thought?"))
    at = row.find("\n\nTrial 1")
    s, e = row.spans[at]
    assert s <= row.text.index("\n\nTrial 1") < e
    end = row.find("Trial 1", anchor="end")
    s, e = row.spans[end]
    assert s <= row.text.index("Trial 1") + len("Trial 1") - 1 < e
    with pytest.raises(ValueError, match="marker 'Trial 9' not found"):
        row.find("Trial 9")


def test_length_sorted_batches_cover_everything_once():
    groups = length_sorted_batches([5, 1, 9, 3, 7], 2)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert groups[0] == [2, 4]
    with pytest.raises(ValueError, match="batch_size"):
        length_sorted_batches([1], 0)


def _row(ids: tuple[int, ...]) -> Encoded:
    return Encoded(ids, 1, "x" * len(ids), tuple((i, i + 1) for i in range(len(ids))))


@pytest.mark.parametrize("side", ["left", "right"])
def test_make_batch_pads_masks_and_numbers_positions(side):
    rows = [_row((11, 12, 13, 14)), _row((21,)), _row((31, 32))]
    pad = 0
    if side == "right":
        ids = [[11, 12, 13, 14], [21, pad, pad, pad], [31, 32, pad, pad]]
        mask = [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
        positions = [[0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 1, 1]]
    else:
        ids = [[11, 12, 13, 14], [pad, pad, pad, 21], [pad, pad, 31, 32]]
        mask = [[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]]
        positions = [[0, 1, 2, 3], [0, 0, 0, 0], [0, 0, 0, 1]]
    batch = make_batch(rows, pad, side, example_ids=[7, 8, 9])
    assert batch.input_ids.tolist() == ids
    assert batch.attention_mask.tolist() == mask
    assert batch.position_ids.tolist() == positions
    assert batch.input_ids.dtype == batch.attention_mask.dtype == torch.long
    assert batch.example_ids == [7, 8, 9] and batch.rows == rows


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"prompt": 3},
            r"example 4: prompt must be a string or a list of messages, got '3' \(int\)",
        ),
        ({"prompt": "q", "response": 2.5}, r"example 4: response must be a string, got '2\.5'"),
        ({"text": 7}, r"example 4: text must be a string, got '7' \(int\)"),
        (
            {"messages": [{"role": "user", "content": 5}]},
            r"example 4: messages\[0\]\['content'\] must be a string, got '5' \(int\)",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}],
            r"example 4: messages\[1\]\['content'\] must be a string, got 'None' \(NoneType\)",
        ),
        (
            {"prompt": [{"role": "user", "content": 5}]},
            r"example 4: prompt\[0\]\['content'\] must be a string",
        ),
        ({"messages": "hi"}, r"example 4: messages must be a list of .* messages, got 'hi'"),
    ],
)
def test_numbers_where_text_belongs_name_the_row_and_field(item, message):
    with pytest.raises(ValueError, match=message):
        as_example(item, 4)


def test_encode_all_names_the_bad_row(tiny):
    with pytest.raises(ValueError, match=r"example 1: prompt must be a string"):
        encode_all(tiny, ["fine", {"prompt": 3}])
