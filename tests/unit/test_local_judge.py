"""The local judge: each method equals an independent computation on a plain HF model.

Two tiny tokenizers are written here: one that splits numbers into digits (SmolLM2-like) and
one whose vocabulary has every number 0..100 as a token (Llama-3-like). The references run a
plain, un-bridged HF forward per number with no KV cache and no tree mask.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

import interp
from interp.eval.judges.base import JudgeItem
from interp.eval.judges.local import LocalJudge, number_trie
from interp.eval.judges.logprob import splits_numbers
from interp.eval.judges.rubrics import Rubric, builtin
from tests.tiny import CHAT_TEMPLATE, CORPUS, SPECIALS, tiny_config
from tests.tolerance import FP32

ITEMS = [
    JudgeItem("What is the capital of France?", "Paris."),
    JudgeItem("Tell me about the ocean.", "The ocean is wide and deep, and 42 fish live in it."),
    JudgeItem("Why did the chicken cross the road?", "To get to the other side."),
    JudgeItem("Hi", "Wait, let me check that again. The final answer is 7."),
    JudgeItem("Snowflakes?", "Snowflakes drifted lazily from the gray sky " * 3),
]
NUMBERS = [str(n) for n in range(101)]
# Batched or plain-HF forwards round the log-probs differently (relative to their size, FP32).
# A score is on a 0-100 scale and moves by up to ~100 x a log-prob's error: bounded at FP32 of
# its range (measured here: 3.5e-5 of 100). The mass is a product of a few token probabilities,
# so its relative error is the sum of their log-probs' errors: 10 x FP32 (measured: 3.1e-6).
VALUE = 100 * FP32
MASS = 10 * FP32
SHORT = Rubric("short", "Question: {question}\nAnswer: {answer}\nScore from 0 to {scale_max}:")


def _tokenizer(digits: bool, chat: bool) -> PreTrainedTokenizerFast:
    """Byte-level BPE; `digits`: numbers split into single digits, else 0..100 are tokens."""
    core = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if digits:
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
        corpus, vocab = [*CORPUS, *NUMBERS], 400
    else:
        core.pre_tokenizer = byte_level
        corpus, vocab = [*CORPUS, *NUMBERS * 8, *(" " + n for n in NUMBERS)], 800
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIALS, initial_alphabet=byte_level.alphabet()
    )
    core.train_from_iterator(corpus, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _write(directory: Path, arch: str, digits: bool, chat: bool = True) -> Path:
    tok = _tokenizer(digits, chat)
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, tok), dtype=torch.float32)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                param.normal_(0, 0.2)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def digit_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("judge-digits")
    return {
        arch: _write(root / arch, arch, digits=True) for arch in ("llama", "gemma3", "gpt_neox")
    }


@pytest.fixture(scope="module")
def number_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("judge-numbers"), "llama", digits=False)


def _prompt_ids(model: interp.Model, rubric: Rubric, item: JudgeItem, scale: int) -> list[int]:
    """The judge's prompt, built by hand: the chat template, or the plain fallback."""
    text = rubric.render(item, scale)
    tok = model.tokenizer
    if model.has_chat_template:
        chat = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return list(tok(chat, add_special_tokens=False)["input_ids"])
    return list(tok(f"User: {text}\n\nAssistant:")["input_ids"])


def _logprobs(hf: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].double()
    return logits.log_softmax(-1)


def _exact_reference(
    model: interp.Model, hf: torch.nn.Module, prompt: list[int], scale: int, spaces: bool
) -> tuple[float, float]:
    """(mass, expected 0-100): every number teacher-forced as its own full sequence.

    The sequences go through one plain causal forward, right-padded (padding after a row's
    last token cannot change its logits); no KV cache, no tree mask.
    """
    tok = model.tokenizer
    starts_digit = torch.tensor(
        [str(tok.decode([i]))[:1].isdigit() for i in range(len(tok))], dtype=torch.bool
    )
    spelled = [
        (n, tok.encode(text, add_special_tokens=False))
        for n in range(scale + 1)
        for text in ([str(n), " " + str(n)] if spaces else [str(n)])
    ]
    width = len(prompt) + max(len(d) for _, d in spelled)
    ids = torch.full((len(spelled), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, (_, digits) in enumerate(spelled):
        ids[row, : len(prompt) + len(digits)] = torch.tensor(prompt + digits)
        mask[row, : len(prompt) + len(digits)] = 1
    keep = width - len(prompt) + 1  # logits from the last prompt token on
    with torch.no_grad():
        lp = hf(ids, attention_mask=mask, logits_to_keep=keep).logits.double().log_softmax(-1)
    mass = total = 0.0
    for row, (n, digits) in enumerate(spelled):
        logp = sum(float(lp[row, k, t]) for k, t in enumerate(digits))
        end = float(lp[row, len(digits)][~starts_digit[: lp.shape[-1]]].exp().sum())
        p = math.exp(logp) * end
        mass += p
        total += p * n
    return mass, total / mass * 100 / scale


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt_neox"])
def test_digits_exact_equals_teacher_forcing_every_number(digit_dirs, arch):
    model = interp.load_model(str(digit_dirs[arch]), device="cpu")
    assert splits_numbers(model.tokenizer)
    judge = LocalJudge(model, min_mass=0.0, batch_size=2)
    assert judge.method == "digits-exact"
    rubric = SHORT  # prompts of ~40 tokens: longer than gemma3's sliding window of 8
    items = ITEMS[:3]
    scores = judge.score(items, rubric)
    hf = AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
    for item, score in zip(items, scores, strict=True):
        mass, value = _exact_reference(model, hf, _prompt_ids(model, rubric, item, 100), 100, False)
        assert score.mass == pytest.approx(mass, rel=MASS, abs=1e-12)
        assert score.value == pytest.approx(value, abs=VALUE)


def test_digits_exact_on_a_base_model_counts_the_spelling_after_a_space(tmp_path):
    model = interp.load_model(str(_write(tmp_path, "gemma3", digits=True, chat=False)), "cpu")
    judge = LocalJudge(model, min_mass=0.0, batch_size=4)
    rubric = builtin("axbench-instruction")  # 0-2
    hf = AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
    for item, score in zip(ITEMS, judge.score(ITEMS, rubric), strict=True):
        prompt = _prompt_ids(model, rubric, item, 2)
        mass, value = _exact_reference(model, hf, prompt, 2, spaces=True)
        assert score.mass == pytest.approx(mass, rel=MASS)
        assert score.value == pytest.approx(value, abs=VALUE)


def test_number_trie_is_one_node_per_number_on_a_digit_splitting_tokenizer():
    trie = number_trie(_tokenizer(digits=True, chat=True), 100, leading_space=False)
    assert len(trie) == 101  # "0".."9", "10".."99", "100"
    assert sorted(n for n, _ in trie.ends) == list(range(101))
    assert max(trie.depth) == 2


def _top20_reference(logprobs: torch.Tensor, tok, scale: int) -> tuple[float, float]:
    top = logprobs.topk(20)
    mass = total = 0.0
    for value, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        text = str(tok.decode([token])).strip()
        if text.isdigit() and (text == "0" or not text.startswith("0")) and int(text) <= scale:
            mass += math.exp(value)
            total += math.exp(value) * int(text)
    return mass, (total / mass * 100 / scale if mass else float("nan"))


def test_logprob_0_100_equals_the_top20_expectation(number_dir):
    model = interp.load_model(str(number_dir), device="cpu")
    assert not splits_numbers(model.tokenizer)
    assert all(len(model.tokenizer.encode(n, add_special_tokens=False)) == 1 for n in NUMBERS)
    judge = LocalJudge(model, min_mass=0.0, batch_size=2)
    assert judge.method == "logprob-0-100"
    rubric = builtin("trait").fill(trait="evil", description="wants to cause harm")
    hf = AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
    checked = 0
    for item, score in zip(ITEMS, judge.score(ITEMS, rubric), strict=True):
        lp = _logprobs(hf, _prompt_ids(model, rubric, item, 100))[-1]
        mass, value = _top20_reference(lp, model.tokenizer, 100)
        assert score.mass == pytest.approx(mass, rel=MASS, abs=1e-12)
        if mass > 0:
            assert score.value == pytest.approx(value, abs=VALUE)
            checked += 1
    assert checked >= 3  # numbers are most of this vocabulary: the expectation is exercised


def test_logprob_0_9_renders_the_rubric_on_nine_and_maps_to_100(number_dir):
    model = interp.load_model(str(number_dir), device="cpu")
    judge = LocalJudge(model, method="logprob-0-9", min_mass=0.0)
    rubric = builtin("coherence")
    assert "from 0 to 9 and" in judge.prompts(ITEMS[:1], rubric)[0][0]["content"]
    hf = AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
    for item, score in zip(ITEMS, judge.score(ITEMS, rubric), strict=True):
        lp = _logprobs(hf, _prompt_ids(model, rubric, item, 9))[-1]
        mass, value = _top20_reference(lp, model.tokenizer, 9)
        assert score.mass == pytest.approx(mass, rel=MASS, abs=1e-12)
        if mass > 0:
            assert score.value == pytest.approx(value, abs=VALUE)


@pytest.mark.parametrize("method", ["digits-exact", "logprob-0-100"])
def test_batched_scores_equal_batch_one_scores(number_dir, digit_dirs, method):
    source = digit_dirs["llama"] if method == "digits-exact" else number_dir
    model = interp.load_model(str(source), device="cpu")
    rubric = builtin("coherence")
    batched = LocalJudge(model, method=method, batch_size=5, min_mass=0.0).score(ITEMS, rubric)
    alone = LocalJudge(model, method=method, batch_size=1, min_mass=0.0)
    for item, together in zip(ITEMS, batched, strict=True):
        (single,) = alone.score([item], rubric)
        assert together.mass == pytest.approx(single.mass, rel=MASS)
        assert together.value == pytest.approx(single.value, abs=VALUE)


def test_low_mass_is_no_score_and_names_the_top_token(digit_dirs):
    model = interp.load_model(str(digit_dirs["llama"]), device="cpu")
    rubric = builtin("coherence")
    exact = LocalJudge(model, min_mass=0.0).score(ITEMS, rubric)
    thresholded = LocalJudge(model, min_mass=0.5).score(ITEMS, rubric)
    for free, judged in zip(exact, thresholded, strict=True):
        assert free.mass is not None and free.mass < 0.5  # random model: digits are rare
        assert judged.value is None and judged.no_score == "low_mass"
        assert judged.mass == pytest.approx(free.mass)
        assert judged.raw == free.raw != ""


def test_identity_records_method_fingerprint_and_reading_scale(digit_dirs, number_dir):
    digit_model = interp.load_model(str(digit_dirs["llama"]), device="cpu")
    number_model = interp.load_model(str(number_dir), device="cpu")
    coherence = builtin("coherence")
    auto = LocalJudge(digit_model).identity(coherence)
    assert (auto.backend, auto.method, auto.model) == (
        "local",
        "digits-exact",
        digit_model.fingerprint(),
    )
    assert auto.rubric == coherence.digest()
    nine = LocalJudge(digit_model, method="logprob-0-9").identity(coherence)
    assert nine.settings["scale_max"] == 9 and nine.method == "logprob-0-9"
    assert LocalJudge(number_model).identity(coherence).method == "logprob-0-100"
    with pytest.raises(ValueError, match=r"splits numbers into digits.*digits-exact"):
        LocalJudge(digit_model, method="logprob-0-100").identity(coherence)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        LocalJudge(digit_model, batch_size=0)
    with pytest.raises(ValueError, match="needs \\['trait', 'description'\\]"):
        LocalJudge(digit_model).score(ITEMS[:1], builtin("trait"))
