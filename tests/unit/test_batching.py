import pytest
import torch

from interp.batching import (
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
    assert torch.is_tensor(make_batch(encode_all_stub(), 0).input_ids)


def encode_all_stub():
    from interp.batching import Encoded

    return [Encoded((1, 2), 1, "ab", ((0, 1), (1, 2)))]
