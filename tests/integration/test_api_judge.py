"""The API judge and the control-vector export against a real llama.cpp server / runtime.

The server is llama-cpp-python's `llama_cpp.server` serving the embedded SmolLM2 GGUF (Q4_1
weights) on 127.0.0.1 (tests/llamacpp.py). The local judge runs the same GGUF dequantized to
float32 in torch, so the two judges implement one method on two runtimes and must agree.

Every llama.cpp call runs in a child process (the server, and tests.llamacpp_child for the
control vector), so a native crash fails one test with its signal named, not the pytest run.

Control vectors: llama.cpp adds `direction.N` of a control-vector GGUF to the output of block
N (`build_cvec(cur, il)` after the block's FFN residual add, block index il 0-based as in
interp), for il_start <= N <= il_end (both inclusive); its buffer holds n_embd floats per block
starting at block 1 (block 0 has no slot). That is `resid_post` of block N in interp.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import interp
from interp.batching import encode_all
from interp.embedded import EMBEDDED
from interp.eval.judges import api
from interp.eval.judges.api import ApiJudge, ApiJudgeError
from interp.eval.judges.base import JudgeItem
from interp.eval.judges.local import LocalJudge
from interp.eval.judges.logprob import splits_numbers
from interp.eval.judges.rubrics import Rubric, builtin
from interp.positions import ALL
from interp.steering import interventions as iv
from interp.steering.generation import next_token_logprobs
from interp.vectors import DirectionSet
from tests.llamacpp import MODEL_ALIAS, RestartingServer, needs_llama_cpp, run_child

pytestmark = [pytest.mark.embedded, pytest.mark.slow, needs_llama_cpp]

KEY = "sk-interp-test-" + secrets.token_hex(12)
ITEMS_FILE = Path(__file__).parent.parent / "data" / "judge_items.jsonl"
ENV = ("INTERP_JUDGE_BASE_URL", "INTERP_JUDGE_API_KEY", "INTERP_JUDGE_MODEL")
FALLBACKS = ("OPENAI_BASE_URL", "OPENAI_API_KEY")

# KL(llama.cpp ‖ interp) in nats over the full vocabulary, per prompt: Q4_1 weights (and Q8
# activations in the matmuls) in llama.cpp against the same weights dequantized to float32 in
# torch. Measured on the 10 prompts below: unsteered (the floor) max 0.020, mean 0.006;
# steered at blocks 10-20 max 0.013, mean 0.005. The bound leaves 2.5x the floor's maximum.
KL_BOUND = 0.05

# SmolLM2-135M rarely starts a reply to the built-in rubrics with a number (under 0.03 of its
# probability). This short rubric gets 0.03-0.4 on numbers, enough for scores and for "no score"
# decisions on both sides of the 0.25 threshold.
POINTS = Rubric(
    "points", "Question: {question}\nAnswer: {answer}\n\nHow many points out of {scale_max}?"
)


@pytest.fixture(scope="module")
def gguf() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as scratch:
        yield EMBEDDED["smollm2-135m-instruct"].gguf_path(Path(scratch))


@pytest.fixture(scope="module")
def server(gguf: Path) -> Iterator[RestartingServer]:
    """One server for the module, started again for the next test if a test crashed it."""
    served = RestartingServer(gguf, api_key=KEY)
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: RestartingServer) -> Iterator[str]:
    """The judge's environment pointing at the server with the right key. A server that died
    during the test (a native crash) fails that test's teardown with its signal and last lines;
    the next test gets a new server."""
    url = server.url()
    for name in ENV + FALLBACKS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INTERP_JUDGE_BASE_URL", url)
    monkeypatch.setenv("INTERP_JUDGE_API_KEY", KEY)
    monkeypatch.setattr(api, "_PROBED", {})
    yield url
    died = server.died()
    if died:
        pytest.fail(died)


def load_items() -> list[JudgeItem]:
    rows = [json.loads(line) for line in ITEMS_FILE.read_text().splitlines() if line.strip()]
    return [JudgeItem(r["question"], r["answer"]) for r in rows]


def pearson(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def raw_expected_value(url: str, prompt: str) -> tuple[float, float]:
    """(mass, score on 0-100) from a bare HTTP request, worked out here by hand: the expected
    value over the digit tokens 0-9 among the top 20, on a 0-9 scale, times 100/9."""
    body = {
        "model": MODEL_ALIAS,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 1,
        "temperature": 0,
        "seed": 0,
        "logprobs": True,
        "top_logprobs": 20,
    }
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = json.loads(response.read())
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    numbers = {str(k): k for k in range(10)}
    weights = [
        (numbers[t["token"].strip()], math.exp(t["logprob"]))
        for t in top
        if t["token"].strip() in numbers
    ]
    mass = sum(p for _, p in weights)
    return mass, sum(k * p for k, p in weights) / mass * 100 / 9


def test_api_judge_scores_and_detects_digit_splitting(
    env: str, smollm: interp.Model, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    judge = ApiJudge(min_mass=0.0)  # URL and key from the environment, the model from /models
    items = load_items()[:6]
    scores = judge.score(items, POINTS)
    identity = judge.identity(POINTS)
    assert judge.model == MODEL_ALIAS
    # the probe agrees with SmolLM2's own tokenizer: it writes numbers digit by digit
    assert judge.splits_numbers() is True and splits_numbers(smollm.tokenizer) is True
    assert identity.method == "logprob-0-9" and identity.settings["scale_max"] == 9
    # given the tokenizer, the judge decides without a probe, and the same way
    api._PROBED.clear()
    told = ApiJudge(MODEL_ALIAS, tokenizer=smollm.tokenizer, min_mass=0.0)
    assert told.identity(POINTS) == identity and not api._PROBED
    # each score is the expected value a bare request gives, computed by hand
    assert len(scores) == len(items)
    for item, score in zip(items, scores, strict=True):
        mass, value = raw_expected_value(env, POINTS.render(item, scale_max=9))
        assert score.value == pytest.approx(value, abs=1e-6)
        assert score.mass == pytest.approx(mass, abs=1e-9)
    # the key appears in no log line and no result file
    results = tmp_path / "scores.jsonl"
    results.write_text(
        "\n".join(json.dumps({"judge": identity.to_dict(), **s.to_dict()}) for s in scores)
    )
    assert any(r.name.startswith("openai") for r in caplog.records)
    for text in (results.read_text(), repr(judge), *(r.getMessage() for r in caplog.records)):
        assert KEY not in text


def test_wrong_key_names_the_variable_and_not_the_key(
    env: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-" + secrets.token_hex(12)
    monkeypatch.setenv("INTERP_JUDGE_API_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    judge = ApiJudge(MODEL_ALIAS, number_tokens="single")
    with pytest.raises(ApiJudgeError) as err:
        judge.score(load_items()[:2], builtin("coherence"))
    message = str(err.value)
    assert "INTERP_JUDGE_API_KEY" in message and "401" in message and env in message
    for text in (message, repr(judge), *(r.getMessage() for r in caplog.records)):
        assert wrong not in text and KEY not in text


def test_api_judge_agrees_with_the_local_judge(env: str, smollm: interp.Model) -> None:
    """Same method (logprob-0-9), llama.cpp on Q4_1 weights vs torch on dequantized weights.

    SmolLM2-135M is a weak judge: it puts 0.03-0.4 of its probability on a number first, so at
    the paper's 0.25 threshold most items get no score and the decision is a close call. The
    scores are compared twice: where both judges give one at 0.25, and on every item with no
    threshold (min_mass=0, the expected value over number tokens).
    """
    items = load_items()
    assert len(items) >= 40
    remote = ApiJudge(MODEL_ALIAS)  # number_tokens="auto": detects the digit splitting
    local = LocalJudge(smollm, method="logprob-0-9")
    assert remote.identity(POINTS).method == local.identity(POINTS).method == "logprob-0-9"
    got, want = remote.score(items, POINTS), local.score(items, POINTS)
    pairs = list(zip(got, want, strict=True))
    same_decision = sum((a.value is None) == (b.value is None) for a, b in pairs)
    both = [(a.value, b.value) for a, b in pairs if a.value is not None and b.value is not None]
    r_scored = pearson([a for a, _ in both], [b for _, b in both])
    masses = [(float(a.mass or 0.0), float(b.mass or 0.0)) for a, b in pairs]
    r_mass = pearson([a for a, _ in masses], [b for _, b in masses])

    every_got = ApiJudge(MODEL_ALIAS, min_mass=0.0).score(items, POINTS)
    every_want = LocalJudge(smollm, method="logprob-0-9", min_mass=0.0).score(items, POINTS)
    every = [
        (a.value, b.value)
        for a, b in zip(every_got, every_want, strict=True)
        if a.value is not None and b.value is not None
    ]
    r_all = pearson([a for a, _ in every], [b for _, b in every])
    gap = max(abs(a - b) for a, b in every)
    print(
        f"\napi vs local judge on {len(items)} items: same no-score decision on "
        f"{same_decision}/{len(items)} ({len(both)} scored by both); Pearson r of scores "
        f"{r_scored:.4f} (both scored), {r_all:.4f} ({len(every)} items, no threshold; largest "
        f"gap {gap:.2f} points); Pearson r of number mass {r_mass:.4f}"
    )
    assert same_decision >= 0.9 * len(items)
    assert len(both) >= 4 and len(items) - len(both) >= 4  # both decisions really occur
    assert r_scored >= 0.9
    assert len(every) >= 0.9 * len(items) and r_all >= 0.9
    assert r_mass >= 0.9


def _llama_logprobs(
    gguf: Path, rows: list[list[int]], scratch: Path, control_vector: Path | None = None
) -> tuple[torch.Tensor, list[int] | None]:
    """llama.cpp's next-token log-probabilities after each row (full vocabulary, float64), and
    the block range of the control vector, computed in a child process (tests.llamacpp_child):
    a native crash there fails this test with the signal named, not the pytest run."""
    request = {
        "job": "logprobs",
        "gguf": str(gguf),
        "rows": rows,
        "control_vector": str(control_vector) if control_vector else None,
    }
    out = run_child(request, scratch)
    logprobs = load_file(str(out / "logprobs.safetensors"))["logprobs"]
    blocks = json.loads((out / "result.json").read_text()).get("blocks")
    return logprobs, blocks


PROMPTS = [
    "The capital of France is",
    "My favourite food is",
    "Once upon a time, there was a",
    "The best way to learn a language is to",
    "Water boils at a temperature of",
    "In the morning I usually",
    "The most important thing in life is",
    "Scientists recently discovered that",
    "The weather today is",
    "She opened the door and saw",
]


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row, from log-probabilities."""
    return (p_log.exp() * (p_log - q_log)).sum(-1)


NEAR_TIE = 0.25  # nats between the two top-1 candidates that a float reorder may flip


def test_control_vector_export_steers_llama_cpp_like_interp(
    gguf: Path, smollm: interp.Model, tmp_path: Path
) -> None:
    layers = list(range(10, 21))
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(len(layers), smollm.d_model, generator=generator)
    vectors = raw / raw.norm(dim=-1, keepdim=True) * 12.0  # a noticeable push at each block
    directions = DirectionSet.from_tensor(vectors, smollm, layers, method="random")
    path = directions.to_gguf(tmp_path / "random.gguf")

    rows = [list(e.ids) for e in encode_all(smollm, PROMPTS)]
    llama_plain, _ = _llama_logprobs(gguf, rows, tmp_path / "plain")
    llama_steered, blocks = _llama_logprobs(gguf, rows, tmp_path / "steered", path)
    assert blocks == [10, 20]

    interp_plain = next_token_logprobs(smollm, PROMPTS).double()
    intervention = iv.add(directions, layers, 1.0, positions=ALL)
    interp_steered = next_token_logprobs(smollm, PROMPTS, intervention).double()

    floor = _kl(llama_plain, interp_plain)
    kl = _kl(llama_steered, interp_steered)
    effect = _kl(llama_steered, llama_plain)
    top_match = int((llama_steered.argmax(-1) == interp_steered.argmax(-1)).sum())
    changed = int((llama_steered.argmax(-1) != llama_plain.argmax(-1)).sum())
    print(
        f"\ncontrol vector at blocks 10-20: top-1 match {top_match}/10; KL(llama.cpp ‖ interp) "
        f"steered max {kl.max():.4f} mean {kl.mean():.4f}; unsteered max {floor.max():.4f} "
        f"mean {floor.mean():.4f}; steering effect KL(steered ‖ plain) mean {effect.mean():.3f}, "
        f"top-1 changed on {changed}/10"
    )
    # measured 8-9/10 across runs: every miss is a near tie (e.g. "small" vs "place" after
    # "Once upon a time, there was a", 0.01 nats apart in llama.cpp, 0.04 in torch), which the
    # two runtimes' float order decides; a miss that is not a near tie is a real disagreement
    ours_top, theirs_top = interp_steered.argmax(-1), llama_steered.argmax(-1)
    rows_ = torch.arange(len(PROMPTS))
    for runtime in (interp_steered, llama_steered):
        gap = runtime[rows_, ours_top] - runtime[rows_, theirs_top]
        assert float(gap.abs().max()) < NEAR_TIE, f"top-1 differs by {gap.abs().max():.3f} nats"
    assert top_match >= 7
    assert float(kl.max()) < KL_BOUND and float(floor.max()) < KL_BOUND
    # the vector really steers: its effect dwarfs the runtimes' disagreement
    assert float(effect.mean()) > 20 * float(kl.mean())
    assert changed >= 3
