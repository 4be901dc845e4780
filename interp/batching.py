"""Turn texts and chats into padded token batches with exact prompt/response boundaries.

The prompt and the response are tokenized *separately* and concatenated, so the boundary never
merges tokens and "response tokens" is exact (tokenizing `prompt + response` jointly can shift it
by one). Each row keeps its text and the character span of every token, so positions can be
found by marker strings as well as by index.

A `TokenView` describes the tokens of one forward call (a whole batch for capture, one step of
decoding for generation); `interp.positions` selectors read only the view, which is what lets
the same selector drive a capture reduction and a steering policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.models import Message, Model

PaddingSide = Literal["left", "right"]


@dataclass(frozen=True)
class Example:
    """One input: a prompt (plain text or chat messages) and an optional response."""

    prompt: str | Sequence[Message]
    response: str = ""


def as_example(item: Any, index: int = 0) -> Example:
    """Coerce a string, a chat, an `Example` or a JSON-like dict into an `Example`.

    Dicts may be `{"prompt", "response"?}`, `{"text"}`, or `{"messages"}`; a chat (a list of
    role/content dicts) is read like `{"messages"}`: a final assistant message becomes the
    response (the persona-vectors data format). Texts and message contents must be strings.
    """
    if isinstance(item, Example):
        return _checked(item, index)
    if isinstance(item, str):
        return Example(prompt=item)
    if isinstance(item, (list, tuple)) and item and all(isinstance(m, dict) for m in item):
        item = {"messages": list(item)}  # a bare chat
    if isinstance(item, dict):
        if "messages" in item:
            messages = _messages(item["messages"], index, "messages")
            response = _text(item.get("response", ""), index, "response")
            if messages and messages[-1]["role"] == "assistant":
                return Example(prompt=messages[:-1], response=messages[-1]["content"])
            return Example(prompt=messages, response=response)
        if "prompt" in item:
            prompt = _prompt(item["prompt"], index)
            return Example(prompt, _text(item.get("response", ""), index, "response"))
        if "text" in item:
            return Example(prompt=_text(item["text"], index, "text"))
    raise ValueError(
        f"example {index} is not a string, an Example, or a dict with 'prompt', 'text' or "
        f"'messages': {str(item)[:120]!r}"
    )


def _text(value: Any, index: int, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f"example {index}: {where} must be a string, got {str(value)[:80]!r} "
            f"({type(value).__name__}); quote it in the data"
        )
    return value


def _messages(value: Any, index: int, where: str) -> list[Message]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"example {index}: {where} must be a list of {{'role', 'content'}} messages, got "
            f"{str(value)[:80]!r} ({type(value).__name__})"
        )
    for j, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(
                f"example {index}: {where}[{j}] must be a dict with 'role' and 'content', got "
                f"{str(message)[:80]!r}"
            )
        _text(message["content"], index, f"{where}[{j}]['content']")
    return list(value)


def _prompt(value: Any, index: int) -> str | list[Message]:
    if isinstance(value, (list, tuple)):
        return _messages(value, index, "prompt")
    if not isinstance(value, str):
        raise ValueError(
            f"example {index}: prompt must be a string or a list of messages, got "
            f"{str(value)[:80]!r} ({type(value).__name__}); quote it in the data"
        )
    return value


def _checked(example: Example, index: int) -> Example:
    """`example` itself, once its prompt and response are checked (see `as_example`)."""
    _prompt(example.prompt, index)
    _text(example.response, index, "response")
    return example


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: prompt tokens then response tokens, with character spans."""

    ids: tuple[int, ...]
    prompt_len: int
    text: str  # rendered prompt followed by the response
    spans: tuple[tuple[int, int], ...]  # [start, end) of each token in `text`; (0, 0) if none

    def __len__(self) -> int:
        return len(self.ids)

    def digest(self) -> str:
        """Hash of the token ids and the prompt boundary (cache key of this example)."""
        payload = f"{self.prompt_len}:" + ",".join(map(str, self.ids))
        return hashlib.sha1(payload.encode()).hexdigest()

    def find(
        self, marker: str, anchor: Literal["start", "end"] = "start", last: bool = False
    ) -> int:
        """Index of the token holding the first (or last) character of `marker` in the text."""
        where = self.text.rfind(marker) if last else self.text.find(marker)
        if not marker or where < 0:
            raise ValueError(f"marker {marker!r} not found in {_snippet(self.text)}")
        char = where if anchor == "start" else where + len(marker) - 1
        for i, (start, end) in enumerate(self.spans):
            if start <= char < end:
                return i
        # The character fell between token spans (some tokenizers drop spaces from spans).
        for i, (start, _) in enumerate(self.spans):
            if start > char:
                return i if anchor == "start" else max(i - 1, 0)
        return len(self.ids) - 1


def _snippet(text: str, width: int = 80) -> str:
    return repr(text if len(text) <= width else text[: width - 20] + " … " + text[-17:])


def _tokenize(model: Model, text: str, special: bool) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = model.tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [tuple(span) for span in encoding["offset_mapping"]]


def encode(model: Model, example: Example) -> Encoded:
    """Tokenize prompt and response apart and join them (see module docstring)."""
    if isinstance(example.prompt, str):
        prompt_text, special = example.prompt, True
    else:
        prompt_text = model.format_chat(example.prompt, add_generation_prompt=True)
        special = not model.has_chat_template  # a chat template writes its own BOS
    prompt_ids, prompt_spans = _tokenize(model, prompt_text, special)
    response_ids, response_spans = (
        _tokenize(model, example.response, False) if example.response else ([], [])
    )
    offset = len(prompt_text)
    shifted = [(s + offset, e + offset) if e > s else (0, 0) for s, e in response_spans]
    return Encoded(
        ids=tuple(prompt_ids + response_ids),
        prompt_len=len(prompt_ids),
        text=prompt_text + example.response,
        spans=tuple(prompt_spans + shifted),
    )


def encode_all(model: Model, items: Iterable[Any]) -> list[Encoded]:
    """Encode many inputs; fails on empty data or on an example with no tokens."""
    encoded = []
    for i, item in enumerate(items):
        row = encode(model, as_example(item, i))
        if len(row) == 0:
            raise ValueError(f"example {i} has no tokens (empty prompt and response)")
        encoded.append(row)
    if not encoded:
        raise ValueError("no examples given: the input is empty")
    return encoded


@dataclass
class TokenView:
    """The tokens of one forward call, as position selectors see them."""

    input_ids: Int[Tensor, "batch pos"]
    index: Int[Tensor, "batch pos"]  # position within the row's real tokens; -1 on padding
    rows: Sequence[Encoded]  # the encoded inputs (prompt only, during generation)
    example_ids: Sequence[int]  # dataset index of each row
    model: Model
    _prompt_len: Tensor | None = field(default=None, repr=False)
    _row_len: Tensor | None = field(default=None, repr=False)

    @property
    def real(self) -> Bool[Tensor, "batch pos"]:
        return self.index >= 0

    @property
    def prompt_len(self) -> Int[Tensor, "batch 1"]:
        if self._prompt_len is None:
            lengths = [row.prompt_len for row in self.rows]
            self._prompt_len = torch.tensor(lengths, device=self.index.device)[:, None]
        return self._prompt_len

    @property
    def row_len(self) -> Int[Tensor, "batch 1"]:
        if self._row_len is None:
            lengths = [len(row) for row in self.rows]
            self._row_len = torch.tensor(lengths, device=self.index.device)[:, None]
        return self._row_len


@dataclass
class Batch:
    """A padded batch ready for a forward pass."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    position_ids: Int[Tensor, "batch pos"]
    rows: list[Encoded]
    example_ids: list[int]

    def view(self, model: Model) -> TokenView:
        index = torch.where(self.attention_mask.bool(), self.position_ids, -1)
        return TokenView(self.input_ids, index, self.rows, self.example_ids, model)


def make_batch(
    rows: Sequence[Encoded],
    pad_id: int,
    padding_side: PaddingSide = "right",
    device: torch.device | str = "cpu",
    example_ids: Sequence[int] | None = None,
) -> Batch:
    """Pad `rows` to one length; position ids count real tokens only (correct for left padding)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        ids[i, cols] = torch.tensor(row.ids, dtype=torch.long)
        mask[i, cols] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        rows=list(rows),
        example_ids=list(example_ids) if example_ids is not None else list(range(len(rows))),
    )


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, ties: Sequence[tuple[int, ...]] | None = None
) -> list[list[int]]:
    """Group indices into batches of similar length (less padding), longest first.

    `ties` (e.g. the token ids) orders equal lengths, so identical inputs land side by side.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], ties[i] if ties else ()))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
