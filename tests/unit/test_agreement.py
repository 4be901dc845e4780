"""Judge agreement: items matched by digest, statistics as computed by hand, figures from files."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from interp.eval.agreement import agreement, load_scores, paired
from interp.eval.judges.base import JudgeIdentity, JudgeItem, Score
from interp.figures.judges import agreement_scatter

ITEMS = [JudgeItem(f"question {i}", f"answer {i}") for i in range(30)]


def _frames() -> tuple[dict[str, pd.DataFrame], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, size=30)
    b = np.clip(a + rng.normal(0, 20, size=30), 0, 100)
    b[[3, 7]] = np.nan  # judge B gave no score twice
    digests = [item.digest() for item in ITEMS]
    frame_a = pd.DataFrame({"item": digests[:28], "value": a[:28]})  # A never saw the last 2
    order = rng.permutation(30)  # B's rows in another order
    frame_b = pd.DataFrame({"item": [digests[i] for i in order], "value": b[order]})
    return {"A": frame_a, "B": frame_b}, a, b


def test_pairs_are_matched_by_digest_and_statistics_equal_hand_computations():
    frames, a, b = _frames()
    result = agreement(frames, n_resamples=500)
    both = [i for i in range(28) if not math.isnan(b[i])]  # shared and scored by both: 26
    x, y = a[both], b[both]
    row = result.pairs.iloc[0]
    assert (row["common"], row["both_scored"]) == (28, 26)
    assert row["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    rx, ry = pd.Series(x).rank(), pd.Series(y).rank()  # average ranks (clipping made ties)
    assert row["spearman"] == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
    ya, yb = x >= 50, y >= 50
    p_o = np.mean(ya == yb)
    p_e = ya.mean() * yb.mean() + (1 - ya.mean()) * (1 - yb.mean())
    assert row["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-12)
    for kind in ("pearson", "spearman", "kappa"):
        assert row[f"{kind}_low"] <= row[kind] <= row[f"{kind}_high"]
    judges = result.judges.set_index("judge")
    assert judges.loc["A", "no_score_rate"] == 0.0
    assert judges.loc["B", "no_score"] == 2 and judges.loc["B", "no_score_rate"] == 2 / 30
    assert judges.loc["B", "mean"] == pytest.approx(np.nanmean(b))
    text = result.table()
    assert "pearson [95% CI]" in text and "kappa@50 [95% CI]" in text and "6.7%" in text


def test_conflicting_scores_and_a_single_judge_are_refused():
    frames, _, _ = _frames()
    with pytest.raises(ValueError, match="at least two judges, got 1"):
        agreement({"A": frames["A"]})
    doubled = pd.concat([frames["A"], frames["A"].assign(value=frames["A"]["value"] + 1)])
    with pytest.raises(ValueError, match="judge 'A' has two different scores for item"):
        agreement({"A": doubled, "B": frames["B"]})
    with pytest.raises(ValueError, match=r"lack columns \['item'\]"):
        agreement({"A": frames["A"].rename(columns={"item": "id"}), "B": frames["B"]})


class TableJudge:
    """A judge that answers from a table of scores (item digest -> Score)."""

    def __init__(self, identity: JudgeIdentity, scores: dict[str, Score]) -> None:
        self._identity, self.scores = identity, scores

    def identity(self, rubric) -> JudgeIdentity:
        return self._identity

    def score(self, items, rubric) -> list[Score]:
        return [self.scores[item.digest()] for item in items]


def _write_store(path, judge: JudgeIdentity, scores: dict[str, Score]) -> None:
    """Score the items in `scores` through `judge_all` into the store at `path`."""
    from interp.eval.judges.run import judge_all

    by_digest = {item.digest(): item for item in ITEMS}
    items = [by_digest[d] for d in scores]
    judge_all(TableJudge(judge, scores), items, "coherence", path)


def test_stores_and_the_scatter_figure_are_read_from_files(tmp_path):
    frames, _, _ = _frames()
    ident_a = JudgeIdentity("api", "gpt-judge", "logprob-0-100", "r1")
    ident_b = JudgeIdentity("local", "f00d", "digits-exact", "r1")
    _write_store(
        tmp_path / "api" / "scores.jsonl",
        ident_a,
        {
            d: Score(float(v))
            for d, v in zip(frames["A"]["item"], frames["A"]["value"], strict=True)
        },
    )
    _write_store(
        tmp_path / "local" / "scores.jsonl",
        ident_b,
        {
            d: Score(None, "low_mass") if math.isnan(v) else Score(float(v))
            for d, v in zip(frames["B"]["item"], frames["B"]["value"], strict=True)
        },
    )
    loaded = load_scores(tmp_path / "local")
    assert set(loaded["judge"]) == {"local"}
    assert loaded["no_score"].value_counts().to_dict() == {"low_mass": 2}
    from_files = agreement([tmp_path / "api", tmp_path / "local"], n_resamples=500)
    from_frames = agreement(frames, n_resamples=500)
    for kind in ("pearson", "spearman", "kappa"):
        assert from_files.pairs.iloc[0][kind] == pytest.approx(from_frames.pairs.iloc[0][kind])
    saved = json.loads(from_files.save(tmp_path / "agreement.json").read_text())
    assert saved["pairs"][0]["both_scored"] == 26
    fig = agreement_scatter([tmp_path / "api", tmp_path / "local"])
    (trace,) = fig.data
    table = paired([tmp_path / "api", tmp_path / "local"]).dropna()
    assert list(trace.x) == pytest.approx(table["api"].tolist())
    assert list(trace.y) == pytest.approx(table["local"].tolist())
    assert trace.name.startswith("local (n=26, r=")
    assert "Judge agreement" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "api score (0–100)"
    assert fig.layout.yaxis.title.text == "local score (0–100)"


def test_one_store_with_two_judges_counts_as_two(tmp_path):
    path = tmp_path / "both" / "scores.jsonl"
    first = JudgeIdentity("api", "m1", "logprob-0-100", "r1")
    second = JudgeIdentity("api", "m2", "logprob-0-100", "r1")
    digests = [item.digest() for item in ITEMS[:5]]
    _write_store(path, first, {d: Score(10.0 * i) for i, d in enumerate(digests)})
    _write_store(path, second, {d: Score(10.0 * i + 5) for i, d in enumerate(digests)})
    result = agreement([path.parent], n_resamples=200)
    assert set(result.judges["judge"]) == {"both/api:m1", "both/api:m2"}
    assert result.pairs.iloc[0]["pearson"] == pytest.approx(1.0)
