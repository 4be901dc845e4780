"""The local judge on SmolLM2 (a digit-splitting tokenizer): digits-exact equals teacher forcing."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.eval.judges.local import LocalJudge
from tests.unit.test_local_judge import ITEMS, SHORT, _exact_reference, _prompt_ids

pytestmark = pytest.mark.embedded


def test_smollm_digits_exact_equals_teacher_forcing(smollm):
    judge = LocalJudge(smollm, min_mass=0.0, batch_size=2)
    assert judge.method == "digits-exact"
    items = ITEMS[:2]
    hf = AutoModelForCausalLM.from_pretrained(smollm.source, dtype=torch.float32).eval()
    for item, score in zip(items, judge.score(items, SHORT), strict=True):
        prompt = _prompt_ids(smollm, SHORT, item, 100)
        mass, value = _exact_reference(smollm, hf, prompt, 100, spaces=False)
        assert score.mass == pytest.approx(mass, rel=1e-4)
        assert score.value == pytest.approx(value, abs=1e-3)
