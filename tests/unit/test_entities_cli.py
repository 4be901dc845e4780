"""`interp entities label|score|steer|figures`: wiring, figures from files, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from interp.cli.app import app
from interp.saes.load import LoadedSAE
from tests.cli_output import one_error_line
from tests.unit.test_entities_figures import write_score, write_steer

runner = CliRunner()
NEVER_LOADED = "no-such-model-is-ever-loaded"  # the checks must fail before any model loads


def invoke(*args: str):
    return runner.invoke(app, ["entities", *args])


def fake_sae(spec: str, layer: int = 4) -> LoadedSAE:
    return LoadedSAE(
        sae=object(), layer=layer, site="resid_post", hook=f"blocks.{layer}.hook_resid_post",
        source=spec,
    )  # fmt: skip


@pytest.fixture
def wired(monkeypatch):
    """The stages, SAE and model loading replaced by recorders: the CLI's own logic only."""
    calls: dict = {}

    def load_model(spec, *args, **kwargs):
        calls["model"] = spec
        return "MODEL"

    def load_sae(spec, **kwargs):
        calls.setdefault("saes", []).append(str(spec))
        return fake_sae(str(spec), layer=int(str(spec)[-1]) if str(spec)[-1].isdigit() else 4)

    def score(model, data, saes, out, *, top):
        calls["score"] = {"data": data, "saes": [s.source for s in saes], "top": top}
        return {
            "known": {"sae": saes[0].source, "layer": saes[0].layer, "latent": 7,
                      "separation": 0.4, "auroc": 0.8, "auroc_strata": 0.7},
            "unknown": {"sae": saes[-1].source, "layer": saes[-1].layer, "latent": 9,
                        "separation": 0.3, "auroc": 0.75, "auroc_strata": 0.6},
        }  # fmt: skip

    def steer(model, data, saes, out, **kwargs):
        calls["steer"] = {"saes": [s.source for s in saes], **kwargs}
        pd.DataFrame(
            [{"group": "known", "condition": "none", "alpha": 0.0, "n": 2, "refusal": 0.5,
              "hallucination": 0.0, "correct": 0.5}]
        ).to_csv(out / "steering_summary.csv", index=False)  # fmt: skip
        return pd.DataFrame()

    monkeypatch.setattr("interp.models.load_model", load_model)
    monkeypatch.setattr("interp.saes.load.load_sae", load_sae)
    monkeypatch.setattr("interp.entities.run.score", score)
    monkeypatch.setattr("interp.entities.run.steer", steer)
    return calls


def test_figures_are_drawn_from_the_saved_results(tmp_path):
    results = tmp_path / "smollm"
    write_score(results)
    write_steer(results)
    made = invoke("figures", "--results", str(results), "--formats", "html")
    assert made.exit_code == 0, made.output
    names = sorted(p.name for p in (results / "figures").glob("*.html"))
    assert names == [
        f"entities_{f}_smollm.html"  # the label defaults to the results directory's name
        for f in ("attention", "separation", "steering", "sure", "top_latents")
    ]
    target = tmp_path / "figs"
    labelled = invoke(
        "figures", "-r", str(results), "-o", str(target), "--label", "SmolLM2 135M",
        "--formats", "html",
    )  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    assert (target / "entities_separation_SmolLM2-135M.html").is_file()


def test_figures_errors_name_the_path_and_the_command(tmp_path):
    missing = tmp_path / "nowhere"
    result = invoke("figures", "--results", str(missing))
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert str(missing) in line and "interp entities label" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("figures", "--results", str(empty))
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert str(empty) in line and "interp entities score" in line


def test_argument_errors_are_one_line_before_any_model_loads(tmp_path):
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    (labelled / "labels.csv").write_text("type,name,label\ncity,Paris,known\n")
    bad_entities = tmp_path / "entities.json"
    bad_entities.write_text("{not json")
    base = ["-m", NEVER_LOADED]
    cases = [
        (["label", "-o", str(tmp_path / "a"), "--types", "city,dragon", *base],
         "unknown entity type 'dragon'"),
        (["label", "-o", str(tmp_path / "a"), "--types", ",", *base], "--types ',' names no type"),
        (["label", "-o", str(tmp_path / "a"), "--entities", str(bad_entities), *base],
         "is not valid JSON"),
        (["score", "-o", str(labelled), "--sae", str(tmp_path / "no-sae"), *base],
         f"no SAE directory at {tmp_path / 'no-sae'}"),
        (["score", "-o", str(labelled), *base], f"no SAEs are shipped for model {NEVER_LOADED!r}"),
        (["score", "-o", str(tmp_path / "fresh"), "--sae", "x", *base],
         "run `interp entities label --out"),
        (["steer", "-o", str(labelled), *base], "run `interp entities score --out"),
        (["steer", "-o", str(labelled), "--alphas", "0,1", *base], "every α must be > 0"),
        (["steer", "-o", str(labelled), "--alphas", "1,x", *base], "not a comma-separated list"),
    ]  # fmt: skip
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in one_error_line(result.output), (args, result.output)


def test_score_loads_every_sae_given_and_passes_top(wired, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "labels.csv").write_text("type,name,label\ncity,Paris,known\n")
    result = invoke(
        "score", "-o", str(out), "-m", "tiny", "--sae", "sae/block2", "--sae", "sae/block4",
        "--top", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert wired["saes"] == ["sae/block2", "sae/block4"]
    assert wired["score"]["saes"] == ["sae/block2", "sae/block4"] and wired["score"]["top"] == 3
    assert wired["model"] == "tiny"
    assert "known latent 7" in result.output and "unknown latent 9" in result.output
    same_block = invoke("score", "-o", str(out), "--sae", "a/block4", "--sae", "b/block4")
    assert "both read block 4" in one_error_line(same_block.output)


def test_steer_defaults_to_the_chosen_saes_and_passes_the_grid(wired, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    chosen = {
        "known": {"sae": "shipped/block4", "layer": 4, "latent": 7},
        "unknown": {"sae": "shipped/block2", "layer": 2, "latent": 9},
    }
    (out / "chosen.json").write_text(json.dumps(chosen))
    result = invoke(
        "steer", "-o", str(out), "-m", "tiny", "--alphas", "1,3", "--per-group", "5",
        "--random", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert wired["saes"] == ["shipped/block4", "shipped/block2"]
    steer = wired["steer"]
    assert steer["saes"] == ["shipped/block4", "shipped/block2"]
    assert steer["alphas"] == [1.0, 3.0] and steer["per_group"] == 5 and steer["n_random"] == 2
    assert "refusal" in result.output  # the summary table is printed
    given = invoke("steer", "-o", str(out), "--sae", "other/block4", "--sae", "other/block2")
    assert given.exit_code == 0, given.output
    assert wired["steer"]["saes"] == ["other/block4", "other/block2"]
    (out / "chosen.json").write_text(json.dumps({"sae": "shipped/block4", "layer": 4}))
    old = invoke("steer", "-o", str(out))
    assert "does not hold a known and an unknown latent" in one_error_line(old.output)


def test_label_selects_types_and_per_type_before_loading_the_model(wired, tmp_path, monkeypatch):
    seen: dict = {}

    def label(model, data, out, *, samples, batch_size):
        seen.update(types=sorted(data.types), n=len(data.entities), samples=samples)
        return pd.DataFrame({"label": ["known", "unknown", "unknown"]})

    monkeypatch.setattr("interp.entities.run.label", label)
    result = invoke(
        "label", "-o", str(tmp_path / "l"), "-m", "tiny", "--types", "city",
        "--per-type", "2", "--samples", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == {"types": ["city"], "n": 4, "samples": 3}  # 2 real + 2 invented
    assert "3 entities labelled: 2 unknown, 1 known" in result.output


def test_label_runs_on_the_tiny_model_and_figures_ask_for_score(tiny_dir, tmp_path):
    out = tmp_path / "tiny"
    result = invoke(
        "label", "-o", str(out), "-m", str(tiny_dir), "--types", "city", "--per-type", "1",
        "--samples", "1", "--batch-size", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == 2 and set(labels["type"]) == {"city"}
    assert set(labels["origin"]) == {"real", "invented"}
    assert "2 entities labelled" in result.output
    figures = invoke("figures", "-r", str(out))
    assert figures.exit_code == 2
    assert f"interp entities score --out {out}" in one_error_line(figures.output)
