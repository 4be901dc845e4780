"""The introspection variants (Lindsey 2025 §2.4-2.7) on the tiny model: thoughts vs text,
prefill intention, intentional control, the no-questions and the Yes−No logit score, each
checked against plain HF forwards with a hand-added hook and hand-built token masks."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.batching import encode_all, make_batch
from interp.eval.judges.base import JudgeIdentity, Score
from interp.introspection import intent, prefill, thoughts_text, yes_no
from interp.introspection.concepts import extract_concepts
from interp.introspection.trials import MARKER
from interp.positions import Span
from interp.runs.store import RunStore
from interp.steering.generation import steered_logits
from tests.tolerance import FP32, assert_close, relative_error

SENTENCE = "Snowflakes drifted lazily from the gray sky."
OTHER = "The capital of France is Paris."
WORDS = ["Dust", "Snow", "Peace"]
BASELINE = ["Desks", "Jackets", "Sand"]
CONTROLS = ["Islands", "Ice", "Trains", "Linen"]
QUESTIONS = ["Do penguins live at the North Pole?", "Are you a human?"]


@pytest.fixture(scope="module")
def concepts(tiny):
    return extract_concepts(tiny, WORDS, BASELINE)


@pytest.fixture(scope="module")
def hf(tiny):
    return AutoModelForCausalLM.from_pretrained(tiny.source, dtype=torch.float32).eval()


def rendered(tiny, chat, response=""):
    """Token ids and character spans of a chat as the model sees it, tokenized here."""
    text = tiny.format_chat(chat, add_generation_prompt=True)
    enc = tiny.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, spans = list(enc["input_ids"]), list(enc["offset_mapping"])
    if response:
        ids += tiny.tokenizer(response, add_special_tokens=False)["input_ids"]
    return text, ids, spans


def sentence_mask(text, spans, sentence):
    start = text.index(sentence)
    end = start + len(sentence)
    return [e > start and s < end for s, e in spans]


def hf_forward(hf, ids, layer=None, vector=None, mask=None, keep=None):
    """Logits of one row through plain HF, `vector` added after block `layer` where `mask`."""
    handles = []
    if layer is not None:

        def add(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            where = torch.tensor(mask, dtype=hidden.dtype)[None, :, None]
            hidden = hidden + where * vector
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handles.append(hf.model.layers[layer].register_forward_hook(add))
    if keep is not None:
        for i, block in enumerate(hf.model.layers):
            handles.append(
                block.register_forward_hook(
                    lambda m, a, out, i=i: keep.__setitem__(
                        i, (out[0] if isinstance(out, tuple) else out)[0]
                    )
                )
            )
    try:
        with torch.no_grad():
            return hf(torch.tensor([ids])).logits[0]
    finally:
        for handle in handles:
            handle.remove()


def toolkit_logits(tiny, cell):
    (row,) = encode_all(tiny, [cell.prompt])
    batch = make_batch([row], tiny.tokenizer.pad_token_id, "right", tiny.device, [0])
    return steered_logits(tiny, batch, [list(cell.interventions)])[0]


# -- thoughts vs text ----------------------------------------------------------------------


def test_span_selects_the_tokens_that_hold_the_sentence_and_nothing_in_other_rows(tiny):
    chats = [thoughts_text.thought_prompt("thought", s) for s in (SENTENCE, OTHER)]
    rows = encode_all(tiny, chats)
    view = make_batch(rows, tiny.tokenizer.pad_token_id).view(tiny)
    got = Span(SENTENCE).mask(view)
    text, ids, spans = rendered(tiny, chats[0])
    expected = sentence_mask(text, spans, SENTENCE)
    assert rows[0].ids == tuple(ids)
    assert got[0, : len(ids)].tolist() == expected and sum(expected) >= 5
    assert not bool(got[1].any())  # the other row has no such sentence
    assert str(Span(SENTENCE)) == 'span("' + SENTENCE + '")'


def test_injection_lands_on_exactly_the_sentence_tokens(tiny, concepts, hf):
    (cell,) = thoughts_text.thoughts_text_cells(
        tiny,
        concepts,
        [(SENTENCE, "Dust")],
        fractions=[0.5],
        strengths=[8],
        tasks=["thought"],
        controls=False,
    )
    layer = cell.config["layer"]
    text, ids, spans = rendered(tiny, cell.prompt)
    mask = sentence_mask(text, spans, SENTENCE)
    vector = 8 * concepts.vectors[concepts.index("Dust"), layer]
    expected = hf_forward(hf, ids, layer, vector, mask)
    plain = hf_forward(hf, ids)
    got = toolkit_logits(tiny, cell)
    # the bridge and plain HF run other kernels (measured 1.6e-6 here): 10 x FP32 for margin;
    # an injection on the wrong tokens moves the logits by far more (1.45 at the first token)
    assert_close(got, expected, rel=10 * FP32, what="steered logits against plain HF")
    first = mask.index(True)
    assert_close(got[:first], plain[:first], rel=10 * FP32, what="logits before the sentence")
    assert relative_error(got[first], plain[first]) > 1e-3


def test_thoughts_text_grid_has_both_tasks_controls_and_ten_candidates(tiny, concepts):
    cells = thoughts_text.thoughts_text_cells(
        tiny, concepts, n_pairs=2, fractions=[0.0, 1.0], strengths=[2, 4]
    )
    assert len(cells) == 2 * 2 * (1 + 2 * 2)
    control = [c for c in cells if c.config["trial"] == "control"]
    assert len(control) == 4 and all(c.interventions == () for c in control)
    assert all(c.config["layer"] is None for c in control)
    for cell in cells:
        choices = cell.config["choices"]
        assert len(choices) == 10 and cell.config["concept"] in choices
        assert len({w.lower() for w in choices}) == 10
    task = {c.config["task"] for c in cells}
    assert task == {"thought", "repeat"}


def test_trials_batch_like_alone_resume_without_the_model_and_score(
    tiny, concepts, tmp_path, monkeypatch
):
    cells = thoughts_text.thoughts_text_cells(
        tiny, concepts, [(SENTENCE, "Snow"), (OTHER, "Dust")], fractions=[0.5], strengths=[4]
    )
    batched = thoughts_text.run_thoughts_text(tiny, cells, tmp_path / "a.jsonl", batch_size=8)
    alone = [
        thoughts_text.run_thoughts_text(tiny, [c], tmp_path / f"b{i}.jsonl")[0]
        for i, c in enumerate(cells)
    ]
    assert [r["text"] for r in batched] == [r["text"] for r in alone]
    limits = {r["config"]["task"]: r["config"]["max_new_tokens"] for r in batched}
    assert limits == {"thought": 5, "repeat": 15}

    def no_model(*args, **kwargs):
        raise AssertionError("a resumed run called the model")

    monkeypatch.setattr("interp.runs.sweeps.generate", no_model)
    again = thoughts_text.run_thoughts_text(tiny, cells, tmp_path / "a.jsonl", batch_size=8)
    assert [r["key"] for r in again] == [r["key"] for r in batched]
    assert len(RunStore(tmp_path / "a.jsonl").records()) == len(cells)

    # scoring: a hand-made reply set, with a judge that likes the candidate named in the reply
    fake = [dict(r) for r in batched]
    for r in fake:
        c = r["config"]
        if c["task"] == "repeat":
            r["text"] = f"Sure: {c['sentence'].upper()}" if c["pair"] == 0 else "no idea"
        else:
            r["text"] = c["concept"] if c["trial"] == "injected" else c["choices"][0]
    judge = NamedWordJudge()
    table = thoughts_text.summarize_thoughts_text(fake, judge=judge, store=tmp_path / "j.jsonl")
    injected = table[table["trial"] == "injected"].iloc[0]
    assert injected["thought"] == 1.0 and injected["transcription"] == 0.5
    assert injected["success"] == 0.5 and injected["success_k"] == 1 and injected["n"] == 2
    assert injected["chance"] == pytest.approx(0.1)
    control = table[table["trial"] == "control"].iloc[0]
    assert pd.isna(control["layer"]) and pd.isna(control["strength"])
    calls = judge.calls
    thoughts_text.summarize_thoughts_text(fake, judge=judge, store=tmp_path / "j.jsonl")
    assert judge.calls == calls  # the verdicts were stored


class NamedWordJudge:
    """A judge that rates 90 when the candidate word is in the reply, else 10."""

    def __init__(self) -> None:
        self.calls = 0

    def identity(self, rubric):
        return JudgeIdentity("api", "named-word", "text", rubric.digest())

    def score(self, items, rubric):
        self.calls += 1
        out = []
        for item in items:
            word = item.fields.get("word", "")
            out.append(Score(90.0 if word.lower() in item.answer.lower() else 10.0))
        return out


def test_minilm_picks_the_related_candidate():
    picked = thoughts_text.closest_by_embedding(
        ["snowfall in winter", "the sea and its waves", ""],
        [["Dust", "Snow", "Peace"], ["Ocean", "Desks", "Trains"], ["Dust", "Snow", "Peace"]],
    )
    assert picked == ["Snow", "Ocean", None]
    assert thoughts_text.transcribed(f"ok: {SENTENCE.lower()}", SENTENCE)
    assert not thoughts_text.transcribed("Snowflakes drifted", SENTENCE)


# -- prefill intention ---------------------------------------------------------------------


def test_prefill_conditions_inject_the_right_vectors_on_the_sentence(tiny, concepts, hf):
    cells = prefill.prefill_cells(
        tiny, concepts, [(SENTENCE, "Snow")], fractions=[0.5], strengths=[4], seed=3
    )
    by = {c.config["condition"]: c for c in cells}
    assert set(by) == {"none", "prefilled", "random"} and len(cells) == 3
    assert by["none"].interventions == ()
    layer = by["prefilled"].config["layer"]
    for condition in ("prefilled", "random"):
        (edit,) = by[condition].interventions
        word = by[condition].config["injected"]
        torch.testing.assert_close(
            edit.vector(layer), concepts.vectors[concepts.index(word), layer]
        )
    assert by["prefilled"].config["injected"] == "Snow"
    assert by["random"].config["injected"] in {"Dust", "Peace"}
    # on the real chat: the edit covers the sentence, before the prefilled word, and only it
    cell = by["random"]
    text, ids, spans = rendered(tiny, cell.prompt)
    mask = sentence_mask(text, spans, SENTENCE)
    assert text.index(SENTENCE) < text.index("Snow", text.index(SENTENCE) + len(SENTENCE))
    vector = 4 * concepts.vectors[concepts.index(cell.config["injected"]), layer]
    expected = hf_forward(hf, ids, layer, vector, mask)
    # the bridge and plain HF run other kernels (measured 2.8e-6 here): 10 x FP32 for margin
    assert_close(toolkit_logits(tiny, cell), expected, rel=10 * FP32, what="steered logits")


def test_apology_rules_and_the_summary(tiny, concepts, tmp_path):
    cases = {
        "Sorry, that was an accident.": "apology",
        "I didn't mean to say that.": "apology",
        "It was not intentional.": "apology",
        "I meant it. It wasn't an accident at all, sorry.": "intent",
        "It was not an accident; I chose it on purpose.": "intent",
        "Yes.": "intent",
        "No.": "apology",
        "Snowflakes are white.": "unclear",
        "That was my mistake.": "apology",
        "I didn't intend to say that word.": "apology",
        "I did not intend to say it.": "apology",
        "It was not my intention.": "apology",
        "That was not what I intended.": "apology",
        "I did intend to say it.": "intent",
        "Yes, I meant it.": "intent",
        "It was my intention.": "intent",
    }
    for reply, stance in cases.items():
        assert prefill.classify_apology(reply) == stance, reply
    cells = prefill.prefill_cells(
        tiny, concepts, [(SENTENCE, "Snow"), (OTHER, "Dust")], fractions=[0.5], strengths=[4]
    )
    records = prefill.run_prefill(tiny, cells, tmp_path / "p.jsonl", max_new_tokens=4)
    fake = [dict(r) for r in records]
    for r in fake:
        r["text"] = "Sorry, my mistake." if r["config"]["condition"] == "none" else "On purpose."
    table = prefill.summarize_prefill(fake)
    assert list(table["condition"]) == ["none", "prefilled", "random"]
    assert list(table["apology"]) == [1.0, 0.0, 0.0] and list(table["n"]) == [2, 2, 2]
    assert (table["reader"] == "rules").all()


# -- intentional control -------------------------------------------------------------------


@pytest.fixture(scope="module")
def controls(tiny):
    return extract_concepts(tiny, CONTROLS, BASELINE)


def test_intent_cosines_equal_a_hand_computation_and_resume(
    tiny, concepts, controls, hf, tmp_path, monkeypatch
):
    pairs = [(SENTENCE, "Snow"), (OTHER, "Peace")]
    records = intent.run_intent(tiny, concepts, controls, tmp_path / "i.jsonl", pairs)
    assert [r["config"]["condition"] for r in records] == ["think", "dont", "think", "dont"]
    for record in records:
        c = record["config"]
        template = intent.TEMPLATES[c["condition"]]
        content = template.format(sentence=c["sentence"], word=c["concept"].lower())
        _, ids, _ = rendered(tiny, [{"role": "user", "content": content}], c["sentence"])
        n_response = len(tiny.tokenizer(c["sentence"], add_special_tokens=False)["input_ids"])
        states: dict[int, torch.Tensor] = {}
        hf_forward(hf, ids, keep=states)
        for layer in range(tiny.n_layers):
            mean = states[layer][-n_response:].mean(dim=0)
            want = torch.nn.functional.cosine_similarity(
                mean, concepts.vectors[concepts.index(c["concept"]), layer], dim=0
            )
            assert record["cos"][layer] == pytest.approx(float(want), abs=1e-4)
            for w in range(len(CONTROLS)):
                base = torch.nn.functional.cosine_similarity(
                    mean, controls.vectors[w, layer], dim=0
                )
                assert record["control_cos"][layer][w] == pytest.approx(float(base), abs=1e-4)
    table = intent.summarize_intent(records)
    assert list(table["layer"]) == list(range(tiny.n_layers))
    think = [r["cos"] for r in records if r["config"]["condition"] == "think"]
    dont = [r["cos"] for r in records if r["config"]["condition"] == "dont"]
    for layer in range(tiny.n_layers):
        row = table.iloc[layer]
        assert row["think"] == pytest.approx((think[0][layer] + think[1][layer]) / 2)
        gap = sum(t[layer] - d[layer] for t, d in zip(think, dont, strict=True)) / 2
        assert row["gap"] == pytest.approx(gap)
        every = [r["control_cos"][layer] for r in records]
        assert row["baseline"] == pytest.approx(float(torch.tensor(every).mean()))
        assert row["baseline_low"] <= row["baseline"] <= row["baseline_high"]

    def no_model(*args, **kwargs):
        raise AssertionError("a resumed run called the model")

    monkeypatch.setattr("interp.introspection.intent.capture", no_model)
    again = intent.run_intent(tiny, concepts, controls, tmp_path / "i.jsonl", pairs)
    assert [r["key"] for r in again] == [r["key"] for r in records]


def test_intent_refuses_control_vectors_of_another_baseline(tiny, concepts):
    other = extract_concepts(tiny, CONTROLS, ["Desks", "Honey"])
    with pytest.raises(ValueError, match="other baseline words"):
        intent.run_intent(tiny, concepts, other, "unused.jsonl", [(SENTENCE, "Snow")])
    with pytest.raises(ValueError, match=r"condition 'x' must have \{sentence\} and \{word\}"):
        intent.intent_prompts([(SENTENCE, "Snow")], {"x": "think about {word}"})


# -- no-questions and the logit score ------------------------------------------------------


def test_yes_reader():
    assert yes_no.read_yes("Yes, they do.") == "yes"
    assert yes_no.read_yes("No, penguins live in the south.") == "no"
    assert yes_no.read_yes("Penguins don't live there, yes.") == "no"
    assert yes_no.read_yes("Penguins are birds.") == "unclear"


def test_no_questions_are_asked_in_the_trial_under_the_trial_injection(tiny, concepts, tmp_path):
    cells = yes_no.no_question_cells(
        tiny, concepts, ["Dust"], QUESTIONS, fractions=[0.5], strengths=[2], controls_per_question=2
    )
    assert len(cells) == 2 * (2 + 1)
    injected = [c for c in cells if c.config["trial"] == "injected"]
    assert all(str(c.interventions[0].positions) == 'from("\\n\\nTrial 1",last)' for c in injected)
    assert (
        QUESTIONS[0] in cells[0].prompt[-1]["content"] and MARKER in cells[0].prompt[-1]["content"]
    )
    records = yes_no.run_no_questions(tiny, cells, tmp_path / "q.jsonl", max_new_tokens=3)
    fake = [dict(r) for r in records]
    for r in fake:
        r["text"] = "Yes." if r["config"]["trial"] == "injected" else "No."
    table = yes_no.summarize_no_questions(fake)
    assert list(table["trial"]) == ["control", "injected"]
    assert list(table["yes"]) == [0.0, 1.0] and table["yes_shift"].iloc[1] == 1.0


def test_unframed_questions_batch_together_and_each_row_is_injected_on_its_own_question(
    tiny, concepts, tmp_path
):
    # each row's injection starts at its own question: other rows (other questions) must not
    # break the batch (a FromMarker raised there) nor be edited by it
    cells = yes_no.no_question_cells(
        tiny,
        concepts,
        ["Dust"],
        QUESTIONS,
        fractions=[0.5],
        strengths=[2],
        controls_per_question=0,
        framed=False,
    )
    rows = encode_all(tiny, [c.prompt for c in cells])
    batch = make_batch(rows, tiny.tokenizer.pad_token_id, "right", tiny.device, [0, 1])
    view = batch.view(tiny)
    for r, (cell, row) in enumerate(zip(cells, rows, strict=True)):
        mask = cell.interventions[0].positions.mask(view)
        first = row.find(cell.config["text"], "start", True)
        last = row.find(cell.config["text"], "end", True)
        assert mask[r].nonzero().flatten().tolist() == list(range(first, last + 1))
    records = yes_no.run_no_questions(tiny, cells, tmp_path / "u.jsonl", max_new_tokens=2)
    assert len(records) == len(QUESTIONS)


def test_the_logit_detection_prompt_asks_only_for_yes_or_no():
    turn = yes_no.detection_answer_chat()[-1]["content"]
    assert "about?" not in turn and turn.endswith(yes_no.ANSWER_RULE) and MARKER in turn


def marker_mask(text, spans):
    start = text.rfind(MARKER)
    first = next(i for i, (s, e) in enumerate(spans) if s <= start < e)
    return [i >= first for i in range(len(spans))]


def test_logit_score_equals_plain_forwards_with_a_hand_hook(tiny, concepts, hf, tmp_path):
    cells = yes_no.logit_cells(tiny, concepts, ["Snow"], QUESTIONS, fractions=[0.5], strengths=[4])
    assert len(cells) == 2 * 3
    records = yes_no.run_logit_score(tiny, cells, tmp_path / "l.jsonl", batch_size=4)
    tok = tiny.tokenizer
    yes = [tok.encode(s, add_special_tokens=False) for s in ("Yes", " Yes")]
    no = [tok.encode(s, add_special_tokens=False) for s in ("No", " No")]
    yes_ids = sorted({t[0] for t in yes if len(t) == 1})
    no_ids = sorted({t[0] for t in no if len(t) == 1})
    assert yes_ids and no_ids
    layer = cells[-1].config["layer"]
    vector = 4 * concepts.vectors[concepts.index("Snow"), layer]
    diffs = {}
    scale = 0.0  # the largest log-prob: a difference of log-probs rounds relative to it
    for cell, record in zip(cells, records, strict=True):
        text, ids, spans = rendered(tiny, cell.prompt)
        injected = cell.config["trial"] == "injected"
        if injected:
            logits = hf_forward(hf, ids, layer, vector, marker_mask(text, spans))
        else:
            logits = hf_forward(hf, ids)
        lp = logits[-1].log_softmax(-1)
        want = float(lp[yes_ids].logsumexp(-1) - lp[no_ids].logsumexp(-1))
        scale = max(scale, float(lp.abs().max()))
        assert abs(record["diff"] - want) <= FP32 * scale, (record["diff"], want)
        diffs[cell.config["trial"], cell.config["prompt_kind"], cell.config["question"]] = want
    det = diffs["injected", "detection", None] - diffs["uninjected", "detection", None]
    qs = [
        diffs["injected", "no_question", q] - diffs["uninjected", "no_question", q] for q in (0, 1)
    ]
    (row,) = yes_no.summarize_logit_score(records).to_dict("records")
    bound = 4 * FP32 * scale  # each combines up to four of the differences checked above
    assert abs(row["detection_shift"] - det) <= bound
    assert abs(row["no_shift"] - sum(qs) / 2) <= bound
    assert abs(row["score"] - (det - sum(qs) / 2)) <= bound
    assert row["n_questions"] == 2 and row["n_concepts"] == 1


def test_logit_rows_batch_like_alone_resume_and_show_negative_scores(
    tiny, concepts, tmp_path, monkeypatch
):
    cells = yes_no.logit_cells(
        tiny, concepts, ["Dust", "Peace"], QUESTIONS[:1], fractions=[0.0, 1.0], strengths=[2]
    )
    batched = yes_no.run_logit_score(tiny, cells, tmp_path / "a.jsonl", batch_size=5)
    alone = [
        yes_no.run_logit_score(tiny, [c], tmp_path / f"b{i}.jsonl")[0] for i, c in enumerate(cells)
    ]
    for b, a in zip(batched, alone, strict=True):
        assert b["key"] == a["key"]
        # batch 5 against batch 1: rounding relative to the log-probs, not to their difference
        scale = max(abs(a["yes"]), abs(a["no"]))
        assert abs(b["diff"] - a["diff"]) <= FP32 * scale, (b["diff"], a["diff"])

    def no_model(*args, **kwargs):
        raise AssertionError("a resumed run called the model")

    monkeypatch.setattr("interp.introspection.yes_no.next_token_logprobs", no_model)
    again = yes_no.run_logit_score(tiny, cells, tmp_path / "a.jsonl")
    assert [r["diff"] for r in again] == [r["diff"] for r in batched]
    # the score keeps its sign: a no-question moved further towards yes reads negative
    fake = [dict(r) for r in batched]
    for r in fake:
        c = r["config"]
        moved = c["trial"] == "injected"
        r["diff"] = (1.0 if c["prompt_kind"] == "detection" else 3.0) if moved else 0.0
    table = yes_no.summarize_logit_score(fake)
    assert len(table) == 2 and (table["score"] == -2.0).all()
    per = yes_no.summarize_logit_score(fake, per_concept=True)
    assert len(per) == 4 and set(per["concept"]) == {"Dust", "Peace"}


def test_bad_inputs_get_one_clear_line(tiny, concepts):
    with pytest.raises(ValueError, match="strength grid is empty"):
        thoughts_text.thoughts_text_cells(tiny, concepts, n_pairs=1, fractions=[0.5], strengths=[])
    with pytest.raises(ValueError, match=r"layer fraction 1.5 is outside \[0, 1\]"):
        prefill.prefill_cells(tiny, concepts, n_pairs=1, fractions=[1.5])
    with pytest.raises(ValueError, match="layer grid is empty"):
        yes_no.logit_cells(tiny, concepts, fractions=[])
    with pytest.raises(ValueError, match="unknown task 'echo'"):
        thoughts_text.thoughts_text_cells(tiny, concepts, n_pairs=1, tasks=["echo"])
    with pytest.raises(ValueError, match="no concept vector for 'Milk'"):
        prefill.prefill_cells(tiny, concepts, [(SENTENCE, "Milk")], fractions=[0.5])
    with pytest.raises(ValueError, match="no single token for Yes"):
        yes_no.answer_tokens(tiny, yes=("yes",))
    with pytest.raises(ValueError, match="number of pairs must be a whole number"):
        thoughts_text.make_pairs(WORDS, n=0)
    with pytest.raises(ValueError, match="no 'prefill' records"):
        prefill.summarize_prefill([])
    one = extract_concepts(tiny, ["Dust"], BASELINE)
    with pytest.raises(ValueError, match="random-word condition needs at least 2"):
        prefill.prefill_cells(tiny, one, n_pairs=1)


# -- summaries refuse records of two runs --------------------------------------------------


def record(experiment, reply="No.", **config):
    """A stored record as the runners return it, made by hand."""
    return {
        "key": f"{experiment}-{sorted(config.items())}",
        "config": {"experiment": experiment, "fingerprint": "f", "dtype": "float32", **config},
        "text": reply,
    }


def no_question(text, trial="control", sample=0, framed=True, **config):
    where: dict[str, object] = dict.fromkeys(["scale", "fraction", "layer", "strength", "concept"])
    if trial == "injected":
        where = dict(scale="raw", fraction=0.5, layer=2, strength=4.0, concept="Dust")
    q = {"question": 0, "text": QUESTIONS[0], "framed": framed, "seed": 0}
    return record("no_questions", text, trial=trial, sample=sample, **{**q, **where, **config})


def test_no_question_summary_keeps_framed_and_unframed_apart():
    records = [
        no_question("No.", sample=0),
        no_question("No, never.", sample=1),
        no_question("Yes.", sample=0, framed=False),
        no_question("Yes!", sample=1, framed=False),
        no_question("Yes.", trial="injected"),
        no_question("Yes.", trial="injected", framed=False),
    ]
    table = yes_no.summarize_no_questions(records)
    assert list(zip(table["framed"], table["trial"], strict=True)) == [
        (False, "control"),
        (False, "injected"),
        (True, "control"),
        (True, "injected"),
    ]
    shift = table.set_index(["framed", "trial"])["yes_shift"]
    assert shift[True, "injected"] == 1.0  # against the framed controls only
    assert shift[False, "injected"] == 0.0


def test_summaries_refuse_the_records_of_two_runs():
    other_seed = [no_question("No."), no_question("No.", seed=1)]
    with pytest.raises(ValueError, match=r"mix runs: .*trial=control.* different seed; pass"):
        yes_no.summarize_no_questions(other_seed)
    with pytest.raises(ValueError, match="given twice; pass each record once"):
        yes_no.summarize_no_questions([no_question("No."), no_question("No.")])

    def thought(sentence):
        where = dict.fromkeys(thoughts_text.CONFIG)
        return record(
            "thoughts_text", "Snow", task="thought", trial="control", pair=0, concept="Snow",
            sentence=sentence, choices=["Snow", *WORDS], **where,
        )  # fmt: skip

    with pytest.raises(ValueError, match="with different sentence; pass the records of one run"):
        thoughts_text.summarize_thoughts_text([thought(SENTENCE), thought(OTHER)])

    def logit(text):
        where = dict.fromkeys(thoughts_text.CONFIG)
        return {
            **record(
                "yes_no_logit", "", trial="uninjected", prompt_kind="no_question", question=0,
                concept=None, text=text, **where,
            ),
            "diff": 0.0,
        }  # fmt: skip

    with pytest.raises(ValueError, match="with different text; pass the records of one run"):
        yes_no.summarize_logit_score([logit(QUESTIONS[0]), logit(QUESTIONS[1])])

    def traces(controls):
        return {
            **record("intent", condition="think", pair=0, layers=[0], controls=controls),
            "cos": [0.1],
            "control_cos": [[0.0]],
        }

    with pytest.raises(ValueError, match="different controls; pass the records of one run"):
        intent.summarize_intent([traces("a"), traces("b")])
