"""Rubrics as data (the built-in files, rendering, errors, digests) and AxBench's combination."""

from __future__ import annotations

import json
import re

import pytest

from interp.eval.judges.axbench import combine, points
from interp.eval.judges.base import JudgeItem, Score
from interp.eval.judges.rubrics import Rubric, builtin, resolve

BUILTINS = ["trait", "coherence", "axbench-concept", "axbench-instruction", "axbench-fluency"]
ITEM = JudgeItem("Q-MARKER?", "A-MARKER.", {"concept": "C-MARKER"})
FILLS = {"trait": {"trait": "T-MARKER", "description": "D-MARKER"}}


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_renders_with_every_slot_filled(name):
    rubric = builtin(name).fill(**FILLS.get(name, {}))
    assert rubric.name == name
    for scale in {rubric.scale_max, 10} if rubric.scale_max == 100 else {rubric.scale_max}:
        text = rubric.render(ITEM, scale)
        assert not re.search(r"\{\w+\}", text), text  # no slot left unfilled
        for marker in ("Q-MARKER?", "A-MARKER."):
            assert marker in text
        for slot, value in {**FILLS.get(name, {}), "concept": "C-MARKER"}.items():
            if slot in rubric.slots:
                assert value in text
        assert re.search(rf"\b(to|or) {scale}\b", text)  # the scale slot reads the given scale


def test_builtin_scales_and_citations():
    assert {n: builtin(n).scale_max for n in BUILTINS} == {
        "trait": 100,
        "coherence": 100,
        "axbench-concept": 2,
        "axbench-instruction": 2,
        "axbench-fluency": 2,
    }
    assert "Chen et al. 2025" in builtin("trait").description
    assert "REFUSAL" in builtin("trait").template
    assert "Chen et al. 2025" in builtin("coherence").description
    for name in BUILTINS[2:]:
        assert "AxBench" in builtin(name).description
    assert "concept" in builtin("axbench-concept").slots


def test_a_missing_slot_is_named():
    with pytest.raises(ValueError, match=r"rubric 'trait' needs \['trait', 'description'\]"):
        builtin("trait").render(ITEM)
    with pytest.raises(ValueError, match=r"needs \['description'\]"):
        builtin("trait").fill(trait="evil").render(ITEM)
    with pytest.raises(ValueError, match=r"needs \['concept'\]"):
        builtin("axbench-concept").render(JudgeItem("q", "a"))
    with pytest.raises(ValueError, match=r"no \{answer\} slot"):
        Rubric("bad", "{question} only")
    with pytest.raises(ValueError, match=r"no slot named \['colour'\]"):
        builtin("coherence").fill(colour="red")


def _write(tmp_path, body):
    path = tmp_path / "rubric.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_bad_files_are_named_with_the_bad_field(tmp_path):
    good = {"name": "x", "template": "{question} {answer} 0-{scale_max}", "scale_max": 10}
    assert Rubric.load(_write(tmp_path, good)).scale_max == 10
    assert resolve(str(_write(tmp_path, good))).name == "x"
    with pytest.raises(ValueError, match=r"rubric\.json: unknown field\(s\) \['colour'\]"):
        Rubric.load(_write(tmp_path, {**good, "colour": "red"}))
    with pytest.raises(ValueError, match=r"rubric\.json is not a JSON rubric file"):
        Rubric.load(_write(tmp_path, '{"name": "x", "template": '))
    with pytest.raises(ValueError, match=r"rubric\.json: field 'template' must be a string"):
        Rubric.load(_write(tmp_path, {"name": "x", "template": 3}))
    with pytest.raises(ValueError, match=r"rubric\.json: .*scale_max must be 2, 10 or 100, not 7"):
        Rubric.load(_write(tmp_path, {**good, "scale_max": 7}))
    with pytest.raises(ValueError, match=r"rubric\.json: rubric template is malformed"):
        Rubric.load(_write(tmp_path, {**good, "template": "{question} {answer} {oops"}))
    with pytest.raises(ValueError, match=r"no built-in rubric 'nope'; available: .*coherence"):
        builtin("nope")


def test_digest_follows_what_changes_the_prompt_and_not_the_description():
    base = builtin("trait").fill(trait="evil", description="wants harm")
    same = Rubric(base.name, base.template, base.scale_max, "another description", base.values)
    assert same.digest() == base.digest()
    variants = [
        Rubric(base.name, base.template + " ", base.scale_max, base.description, base.values),
        Rubric(base.name, base.template, 10, base.description, base.values),
        base.fill(trait="kind"),
        base.fill(description="wants to help"),
    ]
    digests = {v.digest() for v in variants}
    assert base.digest() not in digests and len(digests) == len(variants)


def test_axbench_combine_is_the_harmonic_mean_with_zero_and_missing():
    assert combine(2.0, 2.0, 2.0) == pytest.approx(2.0)
    assert combine(1.0, 2.0, 2.0) == pytest.approx(3 / (1 / 1 + 1 / 2 + 1 / 2))
    assert combine(0.5, 1.5, 1.0) == pytest.approx(3 / (2 + 2 / 3 + 1))
    assert combine(0.0, 2.0, 2.0) == 0.0
    assert combine(2.0, 0.0, None) is None  # missing wins: no rating, no score
    assert combine(None, 2.0, 2.0) is None
    with pytest.raises(ValueError, match=r"fluency rating must be a number in \[0, 2\], got 75.0"):
        combine(1.0, 1.0, 75.0)
    assert points(Score(75.0)) == pytest.approx(1.5)
    assert points(Score(None, "low_mass")) is None
