"""Detection trials on the tiny model: the grid, the injection span, batching and resuming."""

from __future__ import annotations

import pytest
import torch

from interp.batching import encode_all, make_batch
from interp.introspection.concepts import extract_concepts
from interp.introspection.trials import (
    INJECT_FROM,
    MARKER,
    check_controls,
    detection_chat,
    fraction_layers,
    layer_at,
    run_trials,
    trial_cells,
)
from interp.introspection.words import checked_words, word_list
from interp.runs.store import RunStore
from interp.steering.generation import steered_logits
from tests.tolerance import relative_error

WORDS = ["Dust", "Snow"]
BASELINE = ["Desks", "Jackets", "Sand"]


@pytest.fixture(scope="module")
def concepts(tiny):
    return extract_concepts(tiny, WORDS, BASELINE)


def test_grid_has_one_trial_per_concept_and_as_many_controls_per_cell(tiny, concepts):
    cells = trial_cells(tiny, concepts, fractions=[0.0, 1.0], strengths=[2, 8])
    injected = [c for c in cells if c.config["trial"] == "injected"]
    controls = [c for c in cells if c.config["trial"] == "control"]
    assert len(injected) == len(controls) == 2 * 2 * 2
    assert {c.config["layer"] for c in cells} == {0, tiny.n_layers - 1}
    assert all(c.interventions == () for c in controls)
    assert all(len(c.interventions) == 1 for c in injected)
    edit = injected[0].interventions[0]
    assert edit.coef == 2.0 and edit.positions == INJECT_FROM
    torch.testing.assert_close(edit.vector(edit.layers[0]), concepts.vectors[0, edit.layers[0]])


def test_the_injection_starts_at_the_blank_line_before_the_trial(tiny):
    (row,) = encode_all(tiny, [detection_chat()])
    start = row.find(MARKER, "start", last=True)
    before = tiny.tokenizer.decode(row.ids[start - 1 : start + 1])
    assert "\n" in tiny.tokenizer.decode([row.ids[start]]) + before
    text_from = row.text[row.spans[start][0] :]
    assert MARKER.strip() in text_from and "researcher" not in text_from.lower()
    batch = make_batch([row], tiny.tokenizer.pad_token_id, "right", tiny.device, [0])
    mask = INJECT_FROM.mask(batch.view(tiny))[0]
    assert int(mask.sum()) == len(row.ids) - start and bool(mask[start:].all())


def test_injection_changes_only_positions_from_the_marker(tiny, concepts):
    (cell,) = trial_cells(
        tiny, concepts, ["Dust"], fractions=[0.5], strengths=[8], controls_per_cell=0
    )
    (row,) = encode_all(tiny, [cell.prompt])
    batch = make_batch([row], tiny.tokenizer.pad_token_id, "right", tiny.device, [0])
    plain = steered_logits(tiny, batch, [[]])[0]
    steered = steered_logits(tiny, batch, [list(cell.interventions)])[0]
    start = row.find(MARKER, "start", last=True)
    torch.testing.assert_close(steered[:start], plain[:start])
    assert relative_error(steered[start:], plain[start:]) > 1e-3


def test_a_trial_gives_the_same_text_alone_or_in_a_batch_and_resumes(tiny, concepts, tmp_path):
    cells = trial_cells(tiny, concepts, fractions=[0.5], strengths=[4], controls_per_cell=2)
    batched = run_trials(tiny, cells, tmp_path / "a.jsonl", max_new_tokens=6, batch_size=4)
    alone = [
        run_trials(tiny, [c], tmp_path / f"b{i}.jsonl", max_new_tokens=6)[0]
        for i, c in enumerate(cells)
    ]
    assert [r["text"] for r in batched] == [r["text"] for r in alone]
    # two controls of one cell are two samples: different seeds
    controls = [r for r in batched if r["config"]["trial"] == "control"]
    assert controls[0]["key"] != controls[1]["key"]
    before = len(RunStore(tmp_path / "a.jsonl").records())
    again = run_trials(tiny, cells, tmp_path / "a.jsonl", max_new_tokens=6, batch_size=4)
    assert len(RunStore(tmp_path / "a.jsonl").records()) == before
    assert [r["text"] for r in again] == [r["text"] for r in batched]


def test_bad_grids_get_one_clear_line(tiny, concepts):
    with pytest.raises(ValueError, match=r"layer fraction 1.5 is outside \[0, 1\]"):
        layer_at(tiny, 1.5)
    with pytest.raises(ValueError, match="strength grid is empty"):
        trial_cells(tiny, concepts, fractions=[0.5], strengths=[])
    with pytest.raises(ValueError, match="no concept vector for 'Milk'"):
        trial_cells(tiny, concepts, ["Milk"])
    with pytest.raises(ValueError, match="layer grid is empty"):
        trial_cells(tiny, concepts, fractions=[])
    with pytest.raises(ValueError, match=r"'dust' twice .*give each entry once"):
        trial_cells(tiny, concepts, ["Dust", "dust"], fractions=[0.5], strengths=[4])
    # 4 blocks: 0.5 and 0.67 both round to block 2 (the default grid collides on this model)
    assert fraction_layers(tiny, [0.33, 0.5]) == {0.33: 1, 0.5: 2}
    with pytest.raises(ValueError, match=r"fractions 0.5 and 0.67 both give block 2 .*drop one"):
        trial_cells(tiny, concepts, fractions=[0.5, 0.67], strengths=[4])
    with pytest.raises(ValueError, match=r"fractions 0.33 and 0.33 both give block 1"):
        fraction_layers(tiny, [0.33, 0.33])


def test_repeats_are_refused_in_trial_lists_and_kept_in_the_published_baseline():
    with pytest.raises(ValueError, match=r"words names 'Dust' twice \(words\[0\] 'Dust'"):
        checked_words(["Dust", "Snow", "Dust"], "words", unique=True)
    assert checked_words(["Dust", "dust"], "baseline") == ("Dust", "dust")
    baseline = word_list("baseline")  # published with "Butterflies" twice, kept as published
    assert len(baseline) == 100 and len({w.lower() for w in baseline}) == 99
    assert checked_words(baseline, "baseline") == baseline
    with pytest.raises(ValueError, match="'Butterflies' twice"):
        checked_words(baseline, "words", unique=True)


def test_greedy_decoding_refuses_several_controls_of_one_cell(tiny, concepts, tmp_path):
    two = trial_cells(tiny, concepts, fractions=[0.5], strengths=[4], controls_per_cell=2)
    with pytest.raises(ValueError, match=r"temperature 0 .* the 2 control trials of one prompt"):
        run_trials(tiny, two, tmp_path / "t.jsonl", temperature=0.0)
    assert not (tmp_path / "t.jsonl").exists() or not RunStore(tmp_path / "t.jsonl").records()
    check_controls(two, 1.0, "controls_per_cell")  # sampled: each control its own draw
    one = trial_cells(tiny, concepts, fractions=[0.0, 0.5], strengths=[4, 8], controls_per_cell=1)
    check_controls(one, 0.0, "controls_per_cell")  # one control per cell is allowed greedy
