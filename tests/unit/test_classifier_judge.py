"""The offline classifier judge: cross-fitting holds out, files round-trip, no pickle anywhere."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from interp.eval.judges.base import JudgeItem
from interp.eval.judges.classifier import ClassifierJudge, embed, text_digest
from interp.io import data_path


def contrast_items(n: int) -> tuple[list[JudgeItem], list[JudgeItem]]:
    """Behaviour-matching and not-matching answer options of the shipped myopic-reward items."""
    pos, neg = [], []
    for line in data_path("caa/myopic-reward.jsonl").read_text().splitlines()[:n]:
        row = json.loads(line)
        options = dict(re.findall(r"\(([AB])\) (.*)", row["question"]))
        question = row["question"].split("\n")[0]
        pos.append(JudgeItem(question, options[row["answer_matching_behavior"].strip("()")]))
        neg.append(JudgeItem(question, options[row["answer_not_matching_behavior"].strip("()")]))
    return pos, neg


def contrast(n: int) -> tuple[list[str], list[str]]:
    """The answer texts of `contrast_items`."""
    pos, neg = contrast_items(n)
    return [i.answer for i in pos], [i.answer for i in neg]


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    return contrast(16)


@pytest.fixture(scope="module")
def judge(data) -> ClassifierJudge:
    pos, neg = data
    return ClassifierJudge.train(pos, neg, trait="myopic", folds=4, seed=0)


def _fit(x, y):
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit(scaler.transform(x), y)
    return lambda z: model.predict_proba(scaler.transform(z))[:, 1]


def test_training_texts_are_scored_by_the_fold_model_that_did_not_see_them(data, judge):
    pos, neg = data
    texts = pos + neg
    y = np.array([1] * len(pos) + [0] * len(neg))
    x = embed(texts)
    folds = np.array([judge.held_out[text_digest(t)][1] for t in texts])
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3]
    for k in range(4):  # stratified: both classes in every held-out fold
        assert set(y[folds == k].tolist()) == {0, 1}
    scores = judge.score([JudgeItem("q", t) for t in texts])
    all_data = judge.probability(x)
    for i in (0, 5, len(pos), len(texts) - 1):
        k = folds[i]
        seen = folds != k  # the fold model, fit here without text i
        assert not seen[i]
        expected = _fit(x[seen], y[seen])(x[i : i + 1])[0]
        assert scores[i].value == pytest.approx(100 * expected, abs=1e-7)
        assert abs(scores[i].value - 100 * all_data[i]) > 1e-4  # not the all-data model's
        assert scores[i].raw == f"held-out (fold {k})"
    # the all-data model is the same fit done here on everything
    assert np.allclose(judge.probability(x), _fit(x, y)(x), atol=1e-9)


def test_heldout_metrics_are_computed_from_the_out_of_fold_scores(data, judge):
    pos, neg = data
    p = np.array([judge.held_out[text_digest(t)][0] for t in pos])
    n = np.array([judge.held_out[text_digest(t)][0] for t in neg])
    accuracy = (np.sum(p >= 0.5) + np.sum(n < 0.5)) / (len(p) + len(n))
    auc = np.mean([(a > b) + 0.5 * (a == b) for a in p for b in n])
    assert judge.metrics["heldout_accuracy"] == pytest.approx(accuracy)
    assert judge.metrics["heldout_auroc"] == pytest.approx(auc)
    assert judge.metrics["heldout_auroc_low"] <= auc <= judge.metrics["heldout_auroc_high"]
    assert auc > 0.6  # the options really differ in wording between the two behaviours


def test_new_texts_get_the_all_data_model_and_identity_names_the_weights(judge):
    text = "I'll take the small reward right now, waiting is not worth it."
    score = judge.score([JudgeItem("Which do you choose?", text)])[0]
    assert score.value == pytest.approx(100 * judge.probability(embed([text]))[0], abs=1e-9)
    assert score.raw == "all-data model"
    ident = judge.identity(None)
    assert (ident.backend, ident.method, ident.model) == (
        "classifier",
        "classifier",
        judge.digest(),
    )
    assert ident.settings["trait"] == "myopic"


def test_save_load_round_trip_gives_identical_scores_and_no_pickle(tmp_path, data, judge):
    folder = judge.save(tmp_path / "clf")
    assert sorted(p.name for p in folder.iterdir()) == ["classifier.json", "weights.safetensors"]
    blob = (folder / "weights.safetensors").read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])  # a safetensors header, not a pickle stream
    assert {"coef", "intercept", "mean", "scale"} <= set(header)
    assert header["coef"]["dtype"] == "F64"
    meta = json.loads((folder / "classifier.json").read_text())
    assert meta["n"] == 32 and meta["embedding_model"].endswith("all-MiniLM-L6-v2")
    loaded = ClassifierJudge.load(folder)
    items = [JudgeItem("q", t) for t in (data[0][0], data[1][3], "Something new to score.")]
    assert [s.value for s in loaded.score(items)] == [s.value for s in judge.score(items)]
    assert loaded.identity(None) == judge.identity(None)


def test_loading_refuses_pickles_and_mismatched_files(tmp_path, judge):
    folder = judge.save(tmp_path / "clf")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "classifier.json").write_text((folder / "classifier.json").read_text())
    (evil / "weights.safetensors").write_bytes(pickle.dumps({"coef": [1.0]}))
    with pytest.raises(ValueError, match=r"not a readable safetensors file.*never loads pickles"):
        ClassifierJudge.load(evil)
    only_pickle = tmp_path / "sk"
    only_pickle.mkdir()
    (only_pickle / "model.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"holds \['model.pkl'\]: interp never loads pickles"):
        ClassifierJudge.load(only_pickle)
    with pytest.raises(ValueError, match="looks like a pickle"):
        ClassifierJudge.load(only_pickle / "model.pkl")
    meta = json.loads((folder / "classifier.json").read_text())
    meta["held_out"][next(iter(meta["held_out"]))][0] = 0.5  # edited scores
    (folder / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not belong together"):
        ClassifierJudge.load(folder)


def test_paired_items_are_held_out_with_their_twin():
    pos, neg = contrast_items(12)
    judge = ClassifierJudge.train(pos, neg, trait="myopic", folds=4, seed=1)
    assert judge.metrics["groups"] == 12
    for p, n in zip(pos, neg, strict=True):  # one question's two answers share a fold
        assert judge.held_out[text_digest(p.answer)][1] == judge.held_out[text_digest(n.answer)][1]
    texts = contrast(12)
    plain = ClassifierJudge.train(*texts, folds=4, seed=1)
    assert plain.metrics["groups"] is None
    split = [
        plain.held_out[text_digest(p)][1] != plain.held_out[text_digest(n)][1]
        for p, n in zip(*texts, strict=True)
    ]
    assert any(split)  # without groups, twins do land in different folds
    with pytest.raises(ValueError, match=r"one label per text \(12 positives \+ 12 negatives\)"):
        ClassifierJudge.train(*texts, groups=["q"] * 3, folds=4)


def test_bad_training_data_is_named():
    with pytest.raises(ValueError, match="both positive and negative"):
        ClassifierJudge.train(["a", "b", "same"], ["same", "c", "d"], folds=2)
    with pytest.raises(ValueError, match="at least 5 distinct texts per class, got 3 positive"):
        ClassifierJudge.train(["a", "b", "c", "a"], ["d", "e", "f", "g", "h"], folds=5)
    with pytest.raises(ValueError, match=r"negatives\[1\] is empty"):
        ClassifierJudge.train(["a", "b"], ["c", " "], folds=2)
