"""Entity figures are drawn from saved results files and carry the files' numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from interp.entities.figures import (
    attention_heads,
    draw_all,
    separation_by_layer,
    steering_curves,
    sure_logit,
    top_latents,
)
from interp.figures.style import chromium_path

TOKENS = {"auroc": 0.62, "auroc_low": 0.5, "auroc_high": 0.74, "n_test": 40, "type_auroc": 0.8}
BLOCKS = range(6)
SAE_BLOCKS = (2, 4)
TYPES = ("city", "person")
ALPHAS = (0.5, 1.0, 2.0, 4.0)
GROUPS = ("known", "unknown", "invented")
N_RANDOM = 3
N_HEADS = 4


def _auroc(rng: np.random.Generator, value: float) -> dict:
    return {
        "auroc": value,
        "auroc_low": value - rng.uniform(0.05, 0.15),
        "auroc_high": min(1.0, value + rng.uniform(0.05, 0.1)),
        "n_test": 40,
        "auroc_strata": value - 0.05,
        "auroc_strata_low": value - 0.05 - rng.uniform(0.1, 0.3),
        "auroc_strata_high": min(1.0, value + 0.05),
        "strata_pairs": 120,
        "auroc_invented": value + 0.02,
    }


def verdicts(frame: pd.DataFrame, tokens: dict) -> pd.DataFrame:
    return frame.assign(
        beats_tokens=frame["auroc_low"] > tokens["auroc"],
        beats_type=frame["auroc_low"] > tokens.get("type_auroc", np.nan),
        beats_strata=frame["auroc_strata_low"] > 0.5,
    )


def write_score(root: Path, tokens: dict = TOKENS, seed: int = 0) -> None:
    """layers.csv, latents.csv, tokenization.json and chosen.json as `score` writes them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    layers = []
    for position in ("last", "after"):
        for block in BLOCKS:
            row: dict = {"position": position, "layer": block, "method": "diff_means"}
            slope = 0.06 if position == "last" else 0.03
            row.update(_auroc(rng, 0.55 + slope * block))
            layers.append(row)
    frame = pd.DataFrame(layers)
    frame = verdicts(frame, tokens)
    frame.to_csv(root / "layers.csv", index=False)
    latents = []
    for block in SAE_BLOCKS:
        for position in ("last", "after"):
            for kind in ("known", "unknown"):
                for rank in range(7):
                    row = {
                        "layer": block,
                        "position": position,
                        "kind": kind,
                        "rank": rank,
                        "latent": 1000 * block + 100 * (kind == "unknown") + rank,
                        "separation": 0.5 - 0.05 * rank,
                        **{f"sep_{t}": 0.5 - 0.05 * rank + 0.01 * i for i, t in enumerate(TYPES)},
                        "density": 0.001 * (rank + 1),
                        "freq_known": 0.6,
                        "freq_unknown_real": 0.1,
                        "freq_invented": 0.05,
                        "top_entities": f"Paris | Lima | E{block}{rank}",
                    }
                    row.update(_auroc(rng, 0.7 + 0.01 * rank + 0.08 * (kind == "known")))
                    latents.append(row)
    frame = pd.DataFrame(latents)
    frame = verdicts(frame, tokens)
    frame.to_csv(root / "latents.csv", index=False)
    (root / "tokenization.json").write_text(json.dumps(tokens))
    chosen = {
        "known": {"sae": "x/block4-resid_post", "layer": 4, "latent": 1},
        "unknown": {"sae": "x/block2-resid_post", "layer": 2, "latent": 5},
    }
    (root / "chosen.json").write_text(json.dumps(chosen))


def write_steer(root: Path, seed: int = 1) -> None:
    """steering_summary.csv, sure.csv and attention.csv as `steer` writes them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    summary = []
    cells = [("none", 0.0), ("orthogonalized", 0.0)]
    pools = ("known_latent", "unknown_latent", "random_known", "random_unknown")
    cells += [(c, a) for c in pools for a in ALPHAS]
    for group in GROUPS:
        for condition, alpha in cells:
            row: dict = {"group": group, "condition": condition, "alpha": alpha, "n": 12}
            for metric in ("refusal", "hallucination", "correct"):
                value = float(rng.uniform(0.1, 0.9))
                row.update(
                    {metric: value, f"{metric}_low": value - 0.1, f"{metric}_high": value + 0.08}
                )
            summary.append(row)
    pd.DataFrame(summary).to_csv(root / "steering_summary.csv", index=False)
    conditions = [
        "known_latent",
        "unknown_latent",
        *[f"random_{kind}_{i}" for kind in ("known", "unknown") for i in range(N_RANDOM)],
    ]
    block = {"known": 4, "unknown": 2}
    sure = []
    for group in GROUPS:
        for entity in ("A", "B", "C"):
            base = {"group": group, "type": "city", "entity": f"{group}{entity}"}
            sure.append(
                {**base, "condition": "none", "latent": None, "alpha": 0.0,
                 "yes_minus_no": rng.normal()}
            )  # fmt: skip
            for i, condition in enumerate(conditions):
                for alpha in ALPHAS:
                    sure.append(
                        {**base, "condition": condition, "latent": i, "alpha": alpha,
                         "yes_minus_no": rng.normal(alpha)}
                    )  # fmt: skip
    pd.DataFrame(sure).to_csv(root / "sure.csv", index=False)
    attention = []
    for group in GROUPS:
        for condition in conditions:
            for layer in range(3):
                for head in range(N_HEADS):
                    before = float(rng.uniform(0, 0.5))
                    change = float(rng.normal(0, 0.1))
                    attention.append(
                        {"group": group, "condition": condition,
                         "steered_block": block["unknown" if "unknown" in condition else "known"],
                         "layer": layer, "head": head, "alpha": 1.0, "base": before,
                         "steered": before + change, "change": change, "change_sd": 0.02, "n": 3}
                    )  # fmt: skip
    pd.DataFrame(attention).to_csv(root / "attention.csv", index=False)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_score(root)
    write_steer(root)
    return root


def by_name(fig, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def test_separation_shows_the_directions_the_baseline_and_the_best_latents(results):
    fig = separation_by_layer(results, model="tiny")
    layers = pd.read_csv(results / "layers.csv")
    latents = pd.read_csv(results / "latents.csv")
    title = fig.layout.title.text.lower()
    assert "known vs unknown" in title and "held-out" in title
    baseline = by_name(fig, "tokenization only (logistic regression): 0.62")
    assert list(baseline.y) == [0.62, 0.62]
    band = by_name(fig, "tokenization only (95% CI)")
    assert set(band.y) == {0.5, 0.74}
    for position, label in (("last", "last entity token"), ("after", "token after the entity")):
        rows = layers[layers.position == position].sort_values("layer")
        line = by_name(fig, f"difference of means, {label}")
        assert list(line.x) == list(BLOCKS)
        assert list(line.y) == pytest.approx(rows.auroc.tolist())
        # filled where the interval beats tokenization, open where it does not
        want = ["circle" if b else "circle-open" for b in rows.beats_tokens]
        assert list(line.marker.symbol) == want
        strata = by_name(fig, f"difference of means, {label}, within type × tokenization strata")
        assert list(strata.y) == pytest.approx(rows.auroc_strata.tolist())
        shaded = by_name(fig, f"difference of means, {label} (95% CI)")
        assert max(shaded.y) == pytest.approx(rows.auroc_high.max())
    for kind, shift in (("known", -0.12), ("unknown", 0.12)):
        best = latents[
            (latents.position == "last") & (latents["rank"] == 0) & (latents.kind == kind)
        ]
        best = best.sort_values("layer")
        markers = by_name(fig, f"best {kind} SAE latent of the block (last token)")
        assert list(markers.x) == pytest.approx([b + shift for b in SAE_BLOCKS])
        assert list(markers.y) == pytest.approx(best.auroc.tolist())
        assert list(markers.error_y.array) == pytest.approx((best.auroc_high - best.auroc).tolist())
        assert list(markers.error_y.arrayminus) == pytest.approx(
            (best.auroc - best.auroc_low).tolist()
        )
    typed = by_name(fig, "tokenization + entity type (logistic regression): 0.80")
    assert list(typed.y) == [0.8, 0.8]
    note = fig.layout.annotations[0].text.split("<br>")
    best_last = layers[(layers.position == "last")]
    assert note[0].startswith("<b>tokenization only (0.62):</b> diff. of means at the last")
    for line, column in zip(note, ("beats_tokens", "beats_type", "beats_strata"), strict=True):
        blocks = best_last.loc[best_last[column], "layer"]
        if len(blocks):
            assert f"last entity token: blocks {blocks.min()}" in line, line
    assert note[1].startswith("<b>tokenization + type (0.80):</b>")
    assert note[2].startswith("<b>within strata, above chance (0.50):</b>")
    assert "tiny" in fig.layout.title.subtitle.text


def test_separation_says_when_nothing_beats_tokenization(tmp_path):
    tokens = {"auroc": 0.99, "auroc_low": 0.97, "auroc_high": 1.0, "n_test": 40}
    write_score(tmp_path, tokens)
    fig = separation_by_layer(tmp_path)
    assert "<b>tokenization only (0.99):</b> nothing" in fig.layout.annotations[0].text
    line = by_name(fig, "difference of means, last entity token")
    assert set(line.marker.symbol) == {"circle-open"}
    # with the within-strata null saved: its line, and the verdict named by it
    write_score(tmp_path / "null", {**tokens, "surface_strata": 0.7})
    fig = separation_by_layer(tmp_path / "null")
    assert list(
        by_name(fig, "within strata, the name's length only (logistic regression): 0.70").y
    ) == [
        0.7,
        0.7,
    ]
    assert "within strata, above name length only (0.70)" in fig.layout.annotations[0].text
    # a frame alone: no baseline, no latents
    alone = separation_by_layer(pd.read_csv(tmp_path / "layers.csv"))
    assert not [t for t in alone.data if str(t.name).startswith(("tokenization", "best"))]


def test_top_latents_table_lists_the_files_latents(results):
    fig = top_latents(results, top=5)
    latents = pd.read_csv(results / "latents.csv")
    want = latents[(latents.position == "last") & (latents["rank"] < 5)]
    (table,) = fig.data
    header = [h.replace("<b>", "").replace("</b>", "") for h in table.header.values]
    cells = dict(zip(header, table.cells.values, strict=True))
    assert len(cells["latent"]) == len(want) == 2 * 2 * 5
    assert sorted(map(int, cells["latent"])) == sorted(want.latent.tolist())
    assert {"sep. city", "sep. person", "density", "within strata [95% CI]"} <= set(cells)
    row = list(cells["latent"]).index("4100")  # block 4, unknown, rank 0
    source = want[want.latent == 4100].iloc[0]
    assert cells["AUROC [95% CI]"][row] == (
        f"{source.auroc:.2f} [{source.auroc_low:.2f}, {source.auroc_high:.2f}]"
    )
    assert cells["beats tokens"][row] == ("yes" if source.beats_tokens else "no")
    assert cells["beats tok. + type"][row] == ("yes" if source.beats_type else "no")
    assert cells["within strata [95% CI]"][row] == (
        f"{source.auroc_strata:.2f} [{source.auroc_strata_low:.2f}, {source.auroc_strata_high:.2f}]"
    )
    assert cells["fires most on"][row] == "Paris, Lima, E40"
    assert cells["min sep."][row] == "0.50" and cells["sep. person"][row] == "0.51"
    with pytest.raises(ValueError, match="no latents at position 'middle'"):
        top_latents(results, position="middle")


def test_steering_curves_carry_the_summary_rates(results):
    fig = steering_curves(results, model="tiny")
    summary = pd.read_csv(results / "steering_summary.csv")
    for metric, axis in (("refusal", "x"), ("hallucination", "x2")):
        traces = [t for t in fig.data if t.xaxis == axis]
        for condition, group, name in (
            ("unknown_latent", "known", "unknown latent → known entities"),
            ("known_latent", "unknown", "known latent → unknown entities"),
            ("random_unknown", "known", "random latents (unknown latent's block) → known entities"),
            ("random_known", "unknown", "random latents (known latent's block) → unknown entities"),
        ):
            rows = summary[(summary.condition == condition) & (summary.group == group)]
            rows = rows.sort_values("alpha")
            (line,) = [t for t in traces if t.name == name]
            assert list(line.x) == list(ALPHAS)
            assert list(line.y) == pytest.approx(rows[metric].tolist())
        for condition, label in (("none", "unsteered"), ("orthogonalized", "unknown direction")):
            row = summary[(summary.condition == condition) & (summary.group == "unknown")].iloc[0]
            (marker,) = [
                t for t in traces if t.name.startswith(label) and "unknown entities" in t.name
            ]
            assert list(marker.y) == pytest.approx([row[metric]])
            assert abs(marker.x[0]) < 0.2  # at α = 0, spread a little from the other groups
            assert marker.error_y.array[0] == pytest.approx(row[f"{metric}_high"] - row[metric])
    legend = [t.name for t in fig.data if t.showlegend is not False and t.xaxis == "x"]
    assert len(legend) == len(set(legend))  # one entry per line
    assert list(fig.layout.xaxis.tickvals) == [0.0, *ALPHAS]


def test_sure_logit_means_per_condition_with_random_pooled(results):
    fig = sure_logit(results)
    sure = pd.read_csv(results / "sure.csv")
    pooled = sure.assign(condition=sure.condition.str.replace(r"_\d+$", "", regex=True))
    means = pooled.groupby(["group", "condition", "alpha"]).yes_minus_no.mean()
    for condition, group, name in (
        ("unknown_latent", "known", "unknown latent → known entities"),
        ("known_latent", "invented", "known latent → invented"),
        ("random_known", "unknown", "random latents (known latent's block) → unknown entities"),
        ("random_unknown", "known", "random latents (unknown latent's block) → known entities"),
    ):
        line = by_name(fig, name)
        assert list(line.x) == list(ALPHAS)
        assert list(line.y) == pytest.approx([means[(group, condition, a)] for a in ALPHAS])
        random = condition.startswith("random")
        assert all(c == (3 * N_RANDOM if random else 3) for c in line.customdata)
    unsteered = by_name(fig, "unsteered: known entities (α = 0)")
    assert list(unsteered.y) == pytest.approx([means[("known", "none", 0.0)]])


def test_attention_heatmaps_are_the_mean_change_per_head(results):
    fig = attention_heads(results)
    attention = pd.read_csv(results / "attention.csv")
    heatmaps = {t.name: t for t in fig.data}
    assert set(heatmaps) == {
        "unknown_latent → known",
        "random_unknown → known",
        "known_latent → unknown",
        "random_known → unknown",
    }
    for name, trace in heatmaps.items():
        condition, group = name.split(" → ")
        rows = attention[attention.group == group]
        if condition.startswith("random"):
            rows = rows[rows.condition.str.startswith(condition + "_")]
        else:
            rows = rows[rows.condition == condition]
        z = np.array(trace.z)
        assert z.shape == (3, N_HEADS)
        for block in range(3):
            for head in range(N_HEADS):
                cell = rows[(rows.layer == block) & (rows["head"] == head)]
                assert z[block, head] == pytest.approx(cell.change.mean())
    limits = {(t.zmin, t.zmax, t.zmid) for t in fig.data}
    assert len(limits) == 1  # one shared scale
    zmin, zmax, zmid = limits.pop()
    assert zmid == 0 and zmin == -zmax
    assert zmax == pytest.approx(max(np.abs(np.array(t.z)).max() for t in fig.data))
    titles = [a.text for a in fig.layout.annotations]
    assert "random latents, block 2 (mean of 3) → known entities" in titles
    assert "known latent (block 4) → unknown entities" in titles


def test_draw_all_saves_every_figure_whose_files_exist(results, tmp_path):
    out = tmp_path / "figs"
    files = draw_all(results, out, "smollm2/135m", formats=("html", "png"))
    names = sorted(p.name for p in out.glob("*.html"))
    assert names == [
        f"entities_{f}_smollm2-135m.html"
        for f in ("attention", "separation", "steering", "sure", "top_latents")
    ]
    assert all(p.exists() for p in files)
    if chromium_path() is not None:
        assert len(list(out.glob("*.png"))) == 5
    # only the score stage's files: only its figures
    only = tmp_path / "score-only"
    write_score(only)
    drawn = draw_all(only, tmp_path / "f2", "m", formats=("html",))
    assert sorted(p.name for p in drawn) == [
        "entities_separation_m.html",
        "entities_top_latents_m.html",
    ]


def test_draw_all_names_the_missing_directory_and_the_command(tmp_path):
    missing, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    for call, words in (
        (lambda: draw_all(missing, tmp_path / "figs", "m"), (str(missing), "entities label")),
        (lambda: draw_all(empty, tmp_path / "figs", "m"), (str(empty), "entities score")),
        (lambda: sure_logit(empty), (str(empty / "sure.csv"), "entities steer")),
    ):
        with pytest.raises(FileNotFoundError) as err:
            call()
        assert all(w in str(err.value) for w in words), err.value
