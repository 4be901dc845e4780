"""Position selectors: which tokens a reduction reads or an intervention writes.

A selector maps a `TokenView` (the tokens of one forward call) to a boolean mask. The same
object works for a capture over prompt+response and for steering during generation, where
the view is the prompt at prefill and one new token per row at each decoding step:

| selector          | capture (prompt + response)      | generation                              |
|-------------------|----------------------------------|-----------------------------------------|
| `ALL`             | every real token                 | prompt and every generated token        |
| `PROMPT`          | prompt tokens                    | prefill only                            |
| `RESPONSE`        | response tokens                  | generated tokens                        |
| `LAST_PROMPT`     | the last prompt token (none if   | the last prompt token                   |
|                   | the prompt is empty)             |                                         |
| `LAST`            | the row's final token            | last token of each forward call: the    |
|                   |                                  | last prompt token, then each new token  |
| `FIRST`           | first real token (often a sink)  | first prompt token                      |
| `FromMarker(s)`   | from the token holding `s` on    | same (markers are searched in the prompt)|
| `Span(s)`         | the tokens holding any character | same (searched in the prompt); nothing  |
|                   | of `s` (none in a row without it)| in a row without it                     |
| `Matching(re)`    | tokens whose text matches `re`   | same, for generated tokens too          |
| `Index(k)`        | k-th real token (k<0 from end)   | same, within the prompt                 |
| `Explicit(masks)` | per-example boolean lists        | same; generated tokens are False        |

Combine with `&`, `|` and `~`: e.g. the persona-vectors "response" policy is
`RESPONSE | LAST_PROMPT`; the entity-steering span is `FromMarker(name, "end") & PROMPT`.
`str(selector)` is a stable spec used in cache keys and metadata; `parse` reads it back.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool
from torch import Tensor

from interp.batching import TokenView


class Positions(ABC):
    """Selects token positions in a `TokenView`."""

    @abstractmethod
    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        """Boolean mask over the view's tokens (always False on padding)."""

    def __and__(self, other: Positions) -> Positions:
        return _And(self, other)

    def __or__(self, other: Positions) -> Positions:
        return _Or(self, other)

    def __invert__(self) -> Positions:
        return _Not(self)

    def __repr__(self) -> str:
        return f"Positions({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Positions) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


@dataclass(frozen=True, eq=False)
class _Named(Positions):
    name: Literal["all", "prompt", "response", "last_prompt", "last", "first"]

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        index, real = view.index, view.real
        if self.name == "all":
            return real
        if self.name == "prompt":
            return real & (index < view.prompt_len)
        if self.name == "response":
            return real & (index >= view.prompt_len)
        if self.name == "last_prompt":  # nothing in a row whose prompt is empty (not a pad)
            return real & (index == view.prompt_len - 1)
        if self.name == "first":
            return real & (index == 0)
        last = index.max(dim=-1, keepdim=True).values
        return real & (index == last)

    def __str__(self) -> str:
        return self.name


ALL: Positions = _Named("all")
PROMPT: Positions = _Named("prompt")
RESPONSE: Positions = _Named("response")
LAST_PROMPT: Positions = _Named("last_prompt")
LAST: Positions = _Named("last")
FIRST: Positions = _Named("first")


@dataclass(frozen=True, eq=False)
class FromMarker(Positions):
    """From the token that holds the marker (its first or last character) to the end.

    A row without the marker is an error, unless `optional`: then that row gets no positions
    (for batches that mix rows of several markers, e.g. one entity name per row).
    """

    marker: str
    anchor: Literal["start", "end"] = "start"
    last: bool = False  # use the last occurrence instead of the first
    optional: bool = False  # a row without the marker selects nothing instead of raising

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        starts = [self._start(view, row) for row in range(len(view.rows))]
        start = torch.tensor(starts, device=view.index.device)[:, None]
        return view.real & (view.index >= start)

    def _start(self, view: TokenView, row: int) -> int:
        if self.optional and (not self.marker or self.marker not in view.rows[row].text):
            return len(view.rows[row].ids)  # past the row's end: nothing selected
        try:
            return view.rows[row].find(self.marker, self.anchor, self.last)
        except ValueError as err:
            raise ValueError(f"example {view.example_ids[row]}: {err}") from None

    def __str__(self) -> str:
        args = [json.dumps(self.marker)]
        if self.anchor != "start":
            args.append(self.anchor)
        if self.last:
            args.append("last")
        if self.optional:
            args.append("optional")
        return f"from({','.join(args)})"


@dataclass(frozen=True, eq=False)
class Span(Positions):
    """The tokens that hold any character of `text` (its first or `last` occurrence in the row).

    A row whose text does not contain `text` gets no positions, never an error: one batch may
    mix rows of several texts, and each selector is evaluated on every row. Callers that need
    the text in every row check it themselves (the introspection cell makers do). During
    generation, new tokens are never selected (the span is found in the prompt's text).
    """

    text: str
    last: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text:
            raise ValueError(f"a span needs a non-empty text, got {self.text!r}")

    def bounds(self, view: TokenView, row: int) -> tuple[int, int]:
        """(first, last) token index of the span in `row`, or (0, -1) when absent."""
        encoded = view.rows[row]
        if self.text not in encoded.text:
            return 0, -1
        return (
            encoded.find(self.text, "start", self.last),
            encoded.find(self.text, "end", self.last),
        )

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        bounds = [self.bounds(view, row) for row in range(len(view.rows))]
        device = view.index.device
        low = torch.tensor([b[0] for b in bounds], device=device)[:, None]
        high = torch.tensor([b[1] for b in bounds], device=device)[:, None]
        return view.real & (view.index >= low) & (view.index <= high)

    def __str__(self) -> str:
        return f"span({json.dumps(self.text)}{',last' if self.last else ''})"


@dataclass(frozen=True, eq=False)
class Matching(Positions):
    """Tokens whose decoded text matches a regular expression (re.search)."""

    pattern: str

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        table = view.model.vocab_mask(self.pattern).to(view.input_ids.device)
        return view.real & table[view.input_ids.clamp(min=0, max=table.numel() - 1)]

    def __str__(self) -> str:
        return f"match({json.dumps(self.pattern)})"


@dataclass(frozen=True, eq=False)
class Index(Positions):
    """The k-th real token of each encoded row; negative k counts from the row's end."""

    k: int

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        target = view.row_len + self.k if self.k < 0 else torch.full_like(view.row_len, self.k)
        return view.real & (view.index == target)

    def __str__(self) -> str:
        return f"index({self.k})"


@dataclass(frozen=True, eq=False)
class Explicit(Positions):
    """Per-example masks over real tokens, indexed by dataset example id."""

    masks: tuple[tuple[bool, ...], ...]

    @classmethod
    def of(cls, masks: Sequence[Sequence[bool]]) -> Explicit:
        return cls(tuple(tuple(bool(x) for x in m) for m in masks))

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        width = int(view.index.max().item()) + 1 if view.index.numel() else 0
        table = torch.zeros((len(view.rows), max(width, 1)), dtype=torch.bool)
        for row, example in enumerate(view.example_ids):
            if example >= len(self.masks):
                raise ValueError(
                    f"explicit positions cover {len(self.masks)} examples; example {example} "
                    "has no mask"
                )
            given = self.masks[example][:width]
            table[row, : len(given)] = torch.tensor(given, dtype=torch.bool)
        table = table.to(view.index.device)
        return view.real & table.gather(1, view.index.clamp(min=0))

    def __str__(self) -> str:
        bits = ";".join("".join("1" if x else "0" for x in m) for m in self.masks)
        return f"explicit({bits})"


@dataclass(frozen=True, eq=False)
class _And(Positions):
    left: Positions
    right: Positions

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        return self.left.mask(view) & self.right.mask(view)

    def __str__(self) -> str:
        return f"({self.left}&{self.right})"


@dataclass(frozen=True, eq=False)
class _Or(Positions):
    left: Positions
    right: Positions

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        return self.left.mask(view) | self.right.mask(view)

    def __str__(self) -> str:
        return f"({self.left}|{self.right})"


@dataclass(frozen=True, eq=False)
class _Not(Positions):
    inner: Positions

    def mask(self, view: TokenView) -> Bool[Tensor, "batch pos"]:
        return view.real & ~self.inner.mask(view)

    def __str__(self) -> str:
        return f"!{self.inner}"


_NAMED = {str(p): p for p in (ALL, PROMPT, RESPONSE, LAST_PROMPT, LAST, FIRST)}


def parse(spec: str) -> Positions:
    """Read a selector spec: names, from("…"[,end][,last][,optional]), span("…"[,last]), match("…"),
    index(k), & | ! ( )."""
    parser = _Parser(spec)
    result = parser.union()
    parser.expect_end()
    return result


class _Parser:
    _ATOM = re.compile(r"\s*(from|span|match|index)\(")

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def fail(self, why: str) -> ValueError:
        return ValueError(
            f"cannot parse positions {self.text!r} at character {self.at}: {why}. Valid: "
            f'{", ".join(_NAMED)}, from("marker"[,end][,last][,optional]), span("text"[,last]), '
            'match("regex"), index(k), combined with &, |, ! and parentheses'
        )

    def peek(self) -> str:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1
        return self.text[self.at : self.at + 1]

    def expect_end(self) -> None:
        if self.peek():
            raise self.fail("unexpected text")

    def union(self) -> Positions:
        node = self.intersection()
        while self.peek() == "|":
            self.at += 1
            node = node | self.intersection()
        return node

    def intersection(self) -> Positions:
        node = self.unary()
        while self.peek() == "&":
            self.at += 1
            node = node & self.unary()
        return node

    def unary(self) -> Positions:
        head = self.peek()
        if head == "!":
            self.at += 1
            return ~self.unary()
        if head == "(":
            self.at += 1
            node = self.union()
            if self.peek() != ")":
                raise self.fail("missing ')'")
            self.at += 1
            return node
        return self.atom()

    def atom(self) -> Positions:
        call = self._ATOM.match(self.text, self.at)
        if call:
            self.at = call.end()
            args = self.arguments()
            return self.build(call.group(1), args)
        word = re.compile(r"\s*([a-z_]+)").match(self.text, self.at)
        if word and word.group(1) in _NAMED:
            self.at = word.end()
            return _NAMED[word.group(1)]
        raise self.fail("expected a selector")

    def arguments(self) -> list[str | int]:
        args: list[str | int] = []
        decoder = json.JSONDecoder()
        while True:
            head = self.peek()
            if head == ")":
                self.at += 1
                return args
            if head == ",":
                self.at += 1
                continue
            if head == '"':
                value, self.at = decoder.raw_decode(self.text, self.at)
                args.append(value)
                continue
            token = re.compile(r"-?\w+").match(self.text, self.at)
            if not token:
                raise self.fail("bad argument")
            self.at = token.end()
            args.append(
                int(token.group()) if token.group().lstrip("-").isdigit() else token.group()
            )

    def build(self, kind: str, args: list[str | int]) -> Positions:
        if kind == "index" and len(args) == 1 and isinstance(args[0], int):
            return Index(args[0])
        if kind == "match" and len(args) == 1 and isinstance(args[0], str):
            return Matching(args[0])
        if kind == "from" and args and isinstance(args[0], str):
            flags = set(args[1:])
            allowed = {"end", "start", "last", "optional"}
            if not flags <= allowed:
                raise self.fail(f"unknown from() flags {sorted(map(str, flags - allowed))}")
            anchor: Literal["start", "end"] = "end" if "end" in flags else "start"
            return FromMarker(args[0], anchor, "last" in flags, "optional" in flags)
        if kind == "span" and args and isinstance(args[0], str):
            flags = set(args[1:])
            if not flags <= {"last"}:
                raise self.fail(f"unknown span() flags {sorted(map(str, flags - {'last'}))}")
            return Span(args[0], "last" in flags)
        raise self.fail(f"bad arguments for {kind}()")
