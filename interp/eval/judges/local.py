"""A judge that runs on any model `load_model` loads, reading its number from log-probabilities.

The rubric text is the user message (through the model's chat template, or the plain
"User: … Assistant:" fallback of a base model), and the judge reads the first token(s) of the
assistant's reply. Methods (`base.Method`):

- `logprob-0-100`: the paper's method (papers.md §1.3): the top-20 log-probabilities of the
  first reply token over the full vocabulary, expected value over the tokens that are numbers
  in [0, scale] (`logprob.expected_score`). Right for vocabularies with multi-digit number
  tokens; refused on a digit-splitting tokenizer with a 0-100 rubric, where it is silently wrong.
- `logprob-0-9`: the same on a rubric past 9 rendered with `scale_max=9`, mapped to 0-100: the
  one-token reading for a digit-splitting tokenizer (not 0-10: "10" is two tokens there, and
  its first digit would count as 1). Coarser than `digits-exact`, and what an API judge on such
  a vocabulary uses.
- `digits-exact`: the exact probability of every number n in [0, scale] written as its own
  tokens (`tokenizer.encode(str(n))`, digit by digit on a digit-splitting tokenizer) and then
  ended: P(n) = Π P(token_i | prompt, tokens_<i) × P(next token does not start with a digit).
  The events are disjoint, Σ_n P(n) is the number mass, and the score is Σ n·P(n) / Σ P(n)
  mapped to 0-100 (no score when the mass is below `min_mass`). With a base model (prompt
  ending "Assistant:") the spelling with one leading space counts too. On a vocabulary with
  multi-digit tokens, spellings other than the tokenizer's own ("4" then "2" for "42") are not
  counted; `auto` uses this method only on digit-splitting tokenizers.
- `auto`: `digits-exact` if `splits_numbers(tokenizer)`, else `logprob-0-100`.

Cost. All spellings form a trie (for 0..100 on a digit-splitting tokenizer: 10 + 90 + 1 = 101
nodes, one per number). Its nodes run in the same forward as the prompt, after it, under a
tree attention mask (each node sees the prompt, its ancestors and itself), so one item costs
its prompt plus 101 tokens, with no copy of the prompt's KV cache. Items in a batch share the
forward; the prompt prefix common to a batch (chat header, rubric preamble) runs once and its
KV cache is repeated (not on sliding-window models, whose cache keeps only the window).

A refusal ("REFUSAL", or any reply that is not a number) puts little probability on numbers:
it comes back as `no_score="low_mass"` with the top token in `raw`, which is all the
log-probabilities can tell.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.batching import encode_all, length_sorted_batches
from interp.eval.judges.base import MIN_NUMBER_MASS, JudgeIdentity, JudgeItem, Method, Score
from interp.eval.judges.logprob import DIGIT_SCALE, expected_score, splits_numbers
from interp.eval.judges.rubrics import Rubric, resolve
from interp.models import Model
from interp.steering.generation import _cache_arg, _cache_of

LocalMethod = Literal["auto", "digits-exact", "logprob-0-100", "logprob-0-9"]
TOP_LOGPROBS = 20
NUMBER_START = re.compile(r"^[0-9]")


@dataclass(frozen=True)
class Trie:
    """The token spellings of the numbers 0..scale, as a tree of token nodes.

    Node i holds token `tokens[i]` after node `parents[i]` (-1: right after the prompt), at
    `depth[i]` (0 for the first reply token). `ends` pairs each number with the node its
    spelling ends at; one number can have several spellings (with and without a space).
    """

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    depth: tuple[int, ...]
    ends: tuple[tuple[int, int], ...]  # (number, node)

    def __len__(self) -> int:
        return len(self.tokens)

    def ancestry(self) -> Bool[Tensor, "node node"]:
        """[i, j] is True when node j is node i or one of its ancestors (built once)."""
        cached = self.__dict__.get("_ancestry")
        if cached is not None:
            return cached
        n = len(self.tokens)
        table = torch.zeros(n, n, dtype=torch.bool)
        for i in range(n):
            j = i
            while j >= 0:
                table[i, j] = True
                j = self.parents[j]
        object.__setattr__(self, "_ancestry", table)  # a cache, not part of the value
        return table


def number_trie(tokenizer: Any, scale_max: int, leading_space: bool) -> Trie:
    """The trie of the tokenizer's own spellings of 0..`scale_max` (and " n" if asked)."""
    tokens: list[int] = []
    parents: list[int] = []
    depth: list[int] = []
    children: dict[tuple[int, int], int] = {}
    ends: list[tuple[int, int]] = []
    for n in range(scale_max + 1):
        for text in (str(n), " " + str(n)) if leading_space else (str(n),):
            ids = list(tokenizer.encode(text, add_special_tokens=False))
            if len(ids) > 1 and not text.startswith(" ") and not tokenizer.decode(ids[:1]).strip():
                ids = ids[1:]  # a sentencepiece tokenizer's "▁" before a word-initial number
            if not ids or tokenizer.decode(ids).strip() != str(n):
                raise ValueError(
                    f"the tokenizer writes {text!r} as tokens {ids} that decode to "
                    f"{tokenizer.decode(ids)!r}; digits-exact cannot read numbers with it: "
                    "use method='logprob-0-100'"
                )
            node = -1
            for token in ids:
                key = (node, int(token))
                if key not in children:
                    children[key] = len(tokens)
                    tokens.append(int(token))
                    parents.append(node)
                    depth.append(0 if node < 0 else depth[node] + 1)
                node = children[key]
            ends.append((n, node))
    return Trie(tuple(tokens), tuple(parents), tuple(depth), tuple(ends))


def _check_disjoint(trie: Trie, number_start: Bool[Tensor, " vocab"]) -> None:
    """A number's spelling that another extends must be extended by a digit-initial token.

    P(n) requires the token after n's spelling not to start with a digit, so "1" excludes
    "10"; if a longer spelling continued with another token, the two events would overlap.
    """
    ending = {node for _, node in trie.ends}
    for i, parent in enumerate(trie.parents):
        if parent in ending and not bool(number_start[trie.tokens[i]]):
            raise ValueError(
                f"token {trie.tokens[i]} extends a number's spelling but does not start with a "
                "digit, so digits-exact would count two readings of one reply: use "
                "method='logprob-0-100'"
            )


def _masks(
    rows: Sequence[Sequence[int]], shared: int, trie_len: int, ancestry: Bool[Tensor, "node node"]
) -> tuple[Int[Tensor, "batch query"], Bool[Tensor, "batch query key"]]:
    """Token ids, position ids and the allowed-attention table of one tree forward.

    Each row is its prompt after the `shared` prefix (left-padded to a common width), then the
    trie nodes. Keys are the shared prefix (already in the KV cache), then the queries.
    """
    n_rows = len(rows)
    suffixes = [list(row[shared:]) for row in rows]
    width = max(len(s) for s in suffixes)
    queries = width + trie_len
    keys = shared + queries
    real = torch.zeros(n_rows, width, dtype=torch.bool)
    for b, suffix in enumerate(suffixes):
        real[b, width - len(suffix) :] = True
    positions = torch.zeros(n_rows, queries, dtype=torch.long)
    positions[:, :width] = shared + (real.long().cumsum(-1) - 1).clamp(min=0)
    allowed = torch.zeros(n_rows, queries, keys, dtype=torch.bool)
    allowed[:, :, :shared] = True
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed[:, :width, shared : shared + width] = causal & real[:, None, :]
    allowed[:, width:, shared : shared + width] = real[:, None, :]
    allowed[:, width:, shared + width :] = ancestry
    diagonal = torch.arange(queries)
    allowed[:, diagonal, shared + diagonal] = True  # padding queries see themselves (no NaN)
    return positions, allowed


def _attention_masks(
    model: Model,
    allowed: Bool[Tensor, "batch query key"],
    query_pos: Int[Tensor, "batch query"],
    key_pos: Int[Tensor, "batch key"],
    dtype: torch.dtype,
) -> Tensor | dict[str, Tensor]:
    """The additive 4D mask(s) the model's attention takes, sliding windows applied.

    A model with sliding-window layers (`config.layer_types`) takes one mask per layer type;
    a Mistral-style model with one `sliding_window` for all layers takes the windowed mask.
    The window counts real token positions, as in the same prompt run alone.
    """
    config = model.hf.config
    window = getattr(config, "sliding_window", None)
    distance = query_pos[:, :, None] - key_pos[:, None, :]

    def additive(table: Bool[Tensor, "batch query key"]) -> Tensor:
        mask = torch.zeros(table.shape, dtype=dtype)
        return mask.masked_fill(~table, torch.finfo(dtype).min)[:, None].to(model.device)

    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        kinds = set(layer_types)
        unknown = kinds - {"full_attention", "sliding_attention"}
        if unknown:
            raise ValueError(
                f"{model.name} has attention layers of type {sorted(unknown)}, which the local "
                "judge's tree mask does not model; judge with another model"
            )
        if "sliding_attention" not in kinds:
            return additive(allowed)
        if window is None:
            raise ValueError(f"{model.name} has sliding-window layers but no sliding_window size")
        return {
            "full_attention": additive(allowed),
            "sliding_attention": additive(allowed & (distance < window)),
        }
    if window is not None and getattr(config, "use_sliding_window", True):
        return additive(allowed & (distance < window))
    return additive(allowed)


def _has_sliding_layers(model: Model) -> bool:
    config = model.hf.config
    layer_types = getattr(config, "layer_types", None) or []
    if "sliding_attention" in layer_types:
        return True
    return not layer_types and getattr(config, "sliding_window", None) is not None


def _common_prefix(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    n = min(len(r) for r in rows) - 1  # the last prompt token always runs per row
    for i in range(max(n, 0)):
        token = first[i]
        if any(r[i] != token for r in rows[1:]):
            return i
    return max(n, 0)


def tree_logits(
    model: Model, hf: Any, rows: Sequence[Sequence[int]], trie: Trie | None
) -> Float[Tensor, "batch state vocab"]:
    """Logits after each row's last prompt token (state 0) and after each trie node (1..N).

    One forward for the batch: the prompts, left-padded, each followed by the trie's nodes
    under a tree mask. A prefix common to all rows runs once first and its KV cache is
    repeated (skipped on sliding-window models, whose cache keeps only the window).
    """
    n_nodes = len(trie) if trie is not None else 0
    ancestry = trie.ancestry() if trie is not None else torch.zeros(0, 0, dtype=torch.bool)
    shared = 0
    if len(rows) > 1 and not _has_sliding_layers(model):
        shared = _common_prefix(rows)
    positions, allowed = _masks(rows, shared, n_nodes, ancestry)
    width = positions.shape[1] - n_nodes
    ids = torch.zeros(len(rows), width + n_nodes, dtype=torch.long)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids[:, :width] = pad
    for b, row in enumerate(rows):
        suffix = list(row[shared:])
        ids[b, width - len(suffix) : width] = torch.tensor(suffix, dtype=torch.long)
        if trie is not None:
            positions[b, width:] = len(row) + torch.tensor(trie.depth, dtype=torch.long)
    if trie is not None:
        ids[:, width:] = torch.tensor(trie.tokens, dtype=torch.long)
    key_pos = torch.cat(
        [torch.arange(shared).expand(len(rows), shared), positions], dim=1
    )  # prefix keys, then the queries
    masks = _attention_masks(model, allowed, positions, key_pos, model.dtype)
    device = model.device
    cache_kwargs: dict[str, Any] = {}
    if shared:
        prefix = hf(
            torch.tensor([list(rows[0][:shared])], device=device),
            position_ids=torch.arange(shared, device=device)[None],
            use_cache=True,
            logits_to_keep=1,
        )
        cache = _cache_of(prefix)
        cache.batch_repeat_interleave(len(rows))
        cache_kwargs = _cache_arg(hf, cache)
    out = hf(
        ids.to(device),
        attention_mask=masks,
        position_ids=positions.to(device),
        use_cache=bool(shared),
        logits_to_keep=n_nodes + 1,
        **cache_kwargs,
    )
    logits: Tensor = out.logits
    return logits.float()


def _logaddexp(a: float, b: float) -> float:
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top)) if math.isfinite(top) else top


class LocalJudge:
    """The logprob judge on a local model (see the module docstring for the methods).

    Args:
        model: any model `interp.load_model` loads; chat models get the rubric as a user
            message, base models the "User: … Assistant:" fallback.
        method: how the number is read; "auto" picks digits-exact for digit-splitting
            tokenizers and logprob-0-100 otherwise. `method` holds the choice after "auto".
        batch_size: items per forward (batching does not change scores beyond float noise).
        min_mass: no score below this total probability on numbers (0.25 in the paper).
    """

    def __init__(
        self,
        model: Model,
        *,
        method: LocalMethod = "auto",
        batch_size: int = 16,
        min_mass: float = MIN_NUMBER_MASS,
    ) -> None:
        if method not in get_args(LocalMethod):
            raise ValueError(
                f"unknown local judge method {method!r}; use one of {get_args(LocalMethod)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not (math.isfinite(min_mass) and 0.0 <= min_mass <= 1.0):
            raise ValueError(f"min_mass must be a probability in [0, 1], got {min_mass}")
        self.model = model
        self.batch_size = batch_size
        self.min_mass = float(min_mass)
        self.splits_numbers = splits_numbers(model.tokenizer)
        chosen = method
        if method == "auto":
            chosen = "digits-exact" if self.splits_numbers else "logprob-0-100"
        self.method = cast(Method, chosen)
        self._tries: dict[int, Trie] = {}
        self._number_start: Tensor | None = None

    # -- identity ---------------------------------------------------------------------------
    def read_scale(self, rubric: Rubric) -> int:
        """The scale the judge reads numbers on for `rubric` (9 for logprob-0-9 past 9)."""
        if self.method == "logprob-0-9" and rubric.scale_max > DIGIT_SCALE:
            return DIGIT_SCALE
        if self.method == "logprob-0-100" and self.splits_numbers and rubric.scale_max > 9:
            raise ValueError(
                f"{self.model.name}'s tokenizer splits numbers into digits, so one token cannot "
                f"read rubric {rubric.name!r} on 0-{rubric.scale_max}; use method='digits-exact' "
                "(exact) or 'logprob-0-9'"
            )
        return rubric.scale_max

    def _chat_format(self) -> str | None:
        template = getattr(self.model.tokenizer, "chat_template", None)
        if not template:
            return None
        return hashlib.sha256(str(template).encode()).hexdigest()[:12]

    def identity(self, rubric: Rubric | str) -> JudgeIdentity:
        """Backend "local", the model fingerprint, the method used and everything it read."""
        rubric = resolve(rubric)
        settings: dict[str, Any] = {
            "model_name": self.model.name,
            "scale_max": self.read_scale(rubric),
            "min_mass": self.min_mass,
            "chat_template": self._chat_format(),  # digest, or None for the plain fallback
        }
        if self.method in ("logprob-0-100", "logprob-0-9"):
            settings["top_logprobs"] = TOP_LOGPROBS
        else:
            settings["leading_space"] = not self.model.has_chat_template
        return JudgeIdentity(
            "local", self.model.fingerprint(), self.method, rubric.digest(), settings
        )

    # -- scoring ----------------------------------------------------------------------------
    def prompts(
        self, items: Sequence[JudgeItem], rubric: Rubric | str
    ) -> list[list[dict[str, str]]]:
        """The chat each item is judged in: the rendered rubric as one user message."""
        rubric = resolve(rubric)
        scale = self.read_scale(rubric)
        return [[{"role": "user", "content": rubric.render(item, scale)}] for item in items]

    def trie(self, scale: int) -> Trie:
        """The number trie for `scale`, built once per scale."""
        if scale not in self._tries:
            trie = number_trie(self.model.tokenizer, scale, not self.model.has_chat_template)
            _check_disjoint(trie, self._number_starts(len(self.model.tokenizer)))
            self._tries[scale] = trie
        return self._tries[scale]

    def _number_starts(self, vocab: int) -> Bool[Tensor, " vocab"]:
        """Which token ids decode to text starting with a digit (ids past the tokenizer: no)."""
        if self._number_start is None or self._number_start.shape[0] < vocab:
            texts = self.model.token_texts()
            table = torch.zeros(max(vocab, len(texts)), dtype=torch.bool)
            table[: len(texts)] = torch.tensor([bool(NUMBER_START.match(t)) for t in texts])
            self._number_start = table
        return self._number_start[:vocab]

    def score(self, items: Sequence[JudgeItem], rubric: Rubric | str) -> list[Score]:
        """One Score per item, in order; items are batched `batch_size` at a time."""
        if not items:
            return []
        rubric = resolve(rubric)
        scale = self.read_scale(rubric)
        rows = encode_all(self.model, self.prompts(items, rubric))
        trie = self.trie(scale) if self.method == "digits-exact" else None
        out: list[Score | None] = [None] * len(rows)
        with torch.no_grad(), self.model.unwrapped() as hf:
            for group in length_sorted_batches(
                [len(r) for r in rows], self.batch_size, [r.ids for r in rows]
            ):
                logits = tree_logits(self.model, hf, [rows[i].ids for i in group], trie)
                for j, i in enumerate(group):
                    out[i] = (
                        self._digits_score(logits[j], trie, scale)
                        if trie is not None
                        else self._top_score(logits[j, 0], scale)
                    )
        return [s for s in out if s is not None]

    def _text(self, token: int) -> str:
        texts = self.model.token_texts()
        return texts[token] if token < len(texts) else ""

    def _top_score(self, logits: Float[Tensor, " vocab"], scale: int) -> Score:
        logprobs = logits.log_softmax(-1)
        top = logprobs.topk(TOP_LOGPROBS)
        merged: dict[str, float] = {}  # two tokens with one text (e.g. byte fallback) add up
        for value, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            text = self._text(token)
            merged[text] = _logaddexp(merged[text], value) if text in merged else value
        return expected_score(merged, scale_max=scale, min_mass=self.min_mass)

    def _digits_score(self, logits: Float[Tensor, "state vocab"], trie: Trie, scale: int) -> Score:
        log_norm = logits.logsumexp(-1)  # [state]
        parent_state = torch.tensor(trie.parents, dtype=torch.long) + 1  # the root is state 0
        tokens = torch.tensor(trie.tokens, dtype=torch.long)
        edge = (logits[parent_state, tokens] - log_norm[parent_state]).double()
        starts = self._number_starts(logits.shape[-1])
        ended = logits[1:].masked_fill(starts, float("-inf")).logsumexp(-1) - log_norm[1:]
        path = trie.ancestry().double() @ edge  # log P(spelling up to node)
        numbers = torch.tensor([n for n, _ in trie.ends], dtype=torch.float64)
        nodes = torch.tensor([node for _, node in trie.ends], dtype=torch.long)
        probs = (path[nodes] + ended.double()[nodes]).exp()
        mass = float(probs.sum())
        raw = self._text(int(logits[0].argmax()))
        if mass == 0.0 or mass < self.min_mass:
            return Score(None, "low_mass", mass, raw)
        value = float((probs * numbers).sum()) / mass * (100.0 / scale)
        return Score(min(max(value, 0.0), 100.0), None, mass, raw)
