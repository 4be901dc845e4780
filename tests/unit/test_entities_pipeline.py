"""The entity study's stages end to end on the tiny model and a tiny SAE: label → score → steer →
figures, with the scores recomputed here from the saved activations' definition (frequency of
activation among known minus unknown training entities, minimum over types)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from interp.entities import run
from interp.entities.data import load_entities
from interp.entities.figures import draw_all
from interp.entities.labels import load_labels, save_labels_table
from interp.entities.scoring import capture_entities
from interp.io import save_tensors
from interp.saes.load import load_sae
from tests.tiny_sae import write_sae

CITIES = ["Paris", "Tokyo", "Road", "Ocean", "Velmora", "Snowfield", "Trialton", "Why"]
PEOPLE = ["Marie", "Albert", "Tell", "Wait", "Chicken", "Sky", "Honest", "Answer"]


def per_type_separation(tiny, data, sae, out) -> tuple[np.ndarray, pd.DataFrame]:
    """[type, latent] frequency known − unknown on the training entities, written here."""
    acts = capture_entities(tiny, data, load_labels(out / "labels.csv"), layers=[sae.layer])
    frame = acts.frame
    active = (sae.encode(acts.acts["last"][:, 0]) > 0).numpy()
    train = (frame["split"] == "train").to_numpy() & (frame["origin"] == "real").to_numpy()
    known = (frame["label"] == "known").to_numpy()
    rows = []
    for t in ("city", "person"):
        of_t = train & (frame["type"] == t).to_numpy()
        rows.append(active[of_t & known].mean(0) - active[of_t & ~known].mean(0))
    return np.array(rows), frame


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("entities")
    attrs = {
        "a": {"kind": "text", "question": "Where is {entity}?", "prefix": "{entity} is in"},
        "b": {"kind": "text", "question": "What is {entity}?", "prefix": "{entity} is a"},
    }
    types = {
        "city": {"noun": "city", "attributes": attrs},
        "person": {"noun": "person", "attributes": attrs},
    }
    entities = [
        {
            "type": t,
            "name": n,
            "origin": "invented" if i >= 6 else "real",
            "attributes": {} if i >= 6 else {"a": ["x"], "b": ["y"]},
        }
        for t, names in (("city", CITIES), ("person", PEOPLE))
        for i, n in enumerate(names)
    ]
    path = root / "entities.json"
    path.write_text(json.dumps({"types": types, "entities": entities}))
    data = load_entities(path)
    out = root / "results"
    labels = run.label(tiny, data, out, samples=1, batch_size=8)
    assert (labels["origin"] == "invented").sum() == 4
    # the tiny random model knows nothing: mark half the real entities known by hand
    known = {"Paris", "Tokyo", "Road", "Marie", "Albert", "Tell"}
    labels["label"] = ["known" if n in known else "unknown" for n in labels["name"]]
    save_labels_table(labels, out / "labels.csv")
    sae_dir = write_sae(root / "sae", fingerprint=tiny.fingerprint())
    per_type, _ = per_type_separation(tiny, data, load_sae(sae_dir), out)
    dense = int(np.argmax(per_type.min(0)))  # the best known latent, made too dense below
    density = torch.full((32,), 0.01)
    density[dense] = 0.5  # dense on generic text: the 2% filter must drop it
    save_tensors(sae_dir / "density.safetensors", {"density": density}, {"tokens": 1000})
    sae = load_sae(sae_dir).check(tiny)
    # a second SAE at block 1: each kind's latent is chosen from the block where it scores best
    early = write_sae(
        root / "sae1", hook="blocks.1.hook_resid_post", fingerprint=tiny.fingerprint(), seed=1
    )
    save_tensors(early / "density.safetensors", {"density": torch.full((32,), 0.01)}, {})
    return data, out, [sae, load_sae(early).check(tiny)], dense


def test_score_finds_the_latents_by_their_definition(tiny, setup):
    data, out, saes, dense = setup
    sae = saes[0]
    chosen = run.score(tiny, data, saes, out, top=3)
    everything = pd.read_csv(out / "latents.csv")
    latents = everything[everything["layer"] == sae.layer]
    per_type, _ = per_type_separation(tiny, data, sae, out)
    expected = np.min(per_type, axis=0)
    expected[dense] = -np.inf
    assert dense not in set(latents["latent"])
    assert (latents["separation"] > 0).all()  # silent or anti-separating latents are not listed
    top = latents[(latents["position"] == "last") & (latents["kind"] == "known")]
    assert top["separation"].iloc[0] == pytest.approx(expected.max())
    assert top["separation"].is_monotonic_decreasing
    unknown = latents[(latents["position"] == "last") & (latents["kind"] == "unknown")]
    worst_unknown = np.min(-np.array(per_type), 0)
    worst_unknown[dense] = -np.inf
    if worst_unknown.max() > 0:
        assert unknown["separation"].iloc[0] == pytest.approx(worst_unknown.max())
    for kind in ("known", "unknown"):  # each kind from its own best block
        best = everything[
            (everything["position"] == "last") & (everything["kind"] == kind)
        ].sort_values("separation", ascending=False)
        assert (chosen[kind]["layer"], chosen[kind]["latent"]) == (
            int(best["layer"].iloc[0]),
            int(best["latent"].iloc[0]),
        )
        assert chosen[kind]["sae"] == next(
            s.source for s in saes if s.layer == best["layer"].iloc[0]
        )
    layers = pd.read_csv(out / "layers.csv")
    assert sorted(set(layers["layer"])) == list(range(tiny.n_layers))
    tokens = json.loads((out / "tokenization.json").read_text())
    assert set(tokens) >= {"auroc", "auroc_low", "auroc_high"}
    timings = json.loads((out / "timings.json").read_text())
    assert {"label_seconds", "capture_seconds", "scoring_seconds"} <= set(timings)


def test_steer_runs_every_condition_and_resumes(tiny, setup, monkeypatch):
    data, out, saes, _ = setup
    if not (out / "chosen.json").exists():
        run.score(tiny, data, saes, out, top=3)
    chosen = json.loads((out / "chosen.json").read_text())
    results = run.steer(
        tiny, data, saes, out, alphas=(1.0, 2.0), per_group=2, n_random=2, batch_size=8
    )
    meta = json.loads((out / "steering_meta.json").read_text())
    groups = sum(meta["per_group"].values())
    # per entity: unsteered + orthogonalised + (known, unknown, 2 + 2 random) × 2 alphas
    assert len(results) == groups * (2 + 6 * 2)
    assert set(results["condition"]) == {
        "none",
        "orthogonalized",
        "known_latent",
        "unknown_latent",
        "random_known_0",
        "random_known_1",
        "random_unknown_0",
        "random_unknown_1",
    }
    # the fixture's two SAEs put the two kinds in different blocks, so both paths run
    assert chosen["known"]["layer"] != chosen["unknown"]["layer"]
    picked = run._groups(data, out, per_group=2)
    questions = [run.question(e, data, i)[0] for g in picked.values() for i, e in enumerate(g)]
    norms = {k: run.residual_norm(tiny, questions, chosen[k]["layer"]) for k in chosen}
    assert norms["known"] != pytest.approx(norms["unknown"])
    for kind in ("known", "unknown"):  # each latent scaled by its own block's residual norm
        assert meta[kind]["resid_norm"] == pytest.approx(norms[kind])
    for kind in ("known", "unknown"):  # every latent steered at its own SAE's block
        steered = results[results["condition"].str.match(rf"(random_)?{kind}")]
        assert set(steered["layer"]) == {chosen[kind]["layer"]} == {meta[kind]["layer"]}
        randoms = steered.loc[steered["condition"].str.startswith("random"), "latent"]
        assert sorted(set(randoms)) == meta[kind]["random_latents"]
    summary = pd.read_csv(out / "steering_summary.csv")
    assert set(summary["condition"]) == {
        "none",
        "orthogonalized",
        "known_latent",
        "unknown_latent",
        "random_known",
        "random_unknown",
    }
    sure = pd.read_csv(out / "sure.csv")
    assert len(sure) == groups * (1 + 6 * 2)
    attention = pd.read_csv(out / "attention.csv")
    non_empty = sum(1 for n in meta["per_group"].values() if n)
    heads = tiny.hf.config.num_attention_heads
    assert len(attention) == non_empty * 6 * tiny.n_layers * heads
    # resuming generates nothing new
    import interp.steering.generation as generation

    monkeypatch.setattr(generation, "_generate_batch", lambda *a, **k: pytest.fail("regenerated"))
    again = run.steer(
        tiny, data, saes, out, alphas=(1.0, 2.0), per_group=2, n_random=2, batch_size=8
    )
    pd.testing.assert_frame_equal(again, results)
    # the same SAEs copied elsewhere are found by their weights, and nothing is regenerated
    import shutil

    copies = []
    for sae in saes:
        target = out.parent / f"copy-of-{Path(sae.source).name}"
        if not target.exists():
            shutil.copytree(sae.source, target)
        copies.append(load_sae(target))
    moved = run.steer(
        tiny, data, copies, out, alphas=(1.0, 2.0), per_group=2, n_random=2, batch_size=8
    )
    pd.testing.assert_frame_equal(moved, results)
    written = draw_all(out, out / "figures", "tiny", formats=("html",))
    assert len(written) == 5


def test_steer_refuses_without_the_sae_of_a_chosen_latent(tiny, setup, tmp_path):
    data, out, _, _ = setup
    other = load_sae(write_sae(tmp_path / "b0", hook="blocks.0.hook_resid_post"))
    if not (out / "chosen.json").exists():
        pytest.skip("score did not run")
    chosen = json.loads((out / "chosen.json").read_text())
    with pytest.raises(
        ValueError, match=rf"chosen known latent is in SAE .*{chosen['known']['sae']}"
    ):
        run.steer(tiny, data, [other], out)
    # chosen.json in the layout before each kind had its own block: one line saying what to run
    (tmp_path / "chosen.json").write_text(json.dumps({"sae": "x", "layer": 2, "known_latent": 1}))
    with pytest.raises(ValueError, match=r"does not hold a known and an unknown latent.*score"):
        run.steer(tiny, data, [other], tmp_path)
