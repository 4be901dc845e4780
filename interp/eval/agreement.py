"""Agreement between judges that scored the same items (e.g. an API judge and a local one).

Input: judge score stores (the `scores.jsonl` run stores that `judge_all` writes, or the
directories holding them), or DataFrames with an `item` column (the item digest) and a `value`
column (0-100, NaN for no score). One store may hold several judges (identities); each is its
own judge here. Items are matched by digest, so the order of the files does not matter.

For every pair of judges, on the items both scored: Pearson's r and Spearman's rho with
paired-bootstrap 95% intervals, and Cohen's kappa after reading each score as "yes" when
>= `threshold` (50) (`interp.eval.stats`). For every judge: how many items it saw and how
often it gave no score (refusal, too little probability on numbers, unparsed reply, error).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from interp.eval import stats

SCORES_FILE = "scores.jsonl"
THRESHOLD = 50.0


def store_path(path: str | Path) -> Path:
    """The score store at `path`: the file itself, or `path/scores.jsonl` for a directory."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no judge scores at {path}; give a directory written by `interp judge score` "
            f"(it holds {SCORES_FILE}) or the .jsonl store itself"
        )
    return path


def _unit(file: Path, number: int, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """(identity, item, value, no_score) of one `judge_all` record; None for other records.

    `judge_all` writes {"config": {"kind": "judge", "judge": identity, "rubric": digest,
    "item": digest}, "score": value or null, "no_score": reason, ...}.
    """
    config = record.get("config")
    if not isinstance(config, Mapping) or config.get("kind", "judge") != "judge":
        return None
    judge, item = config.get("judge"), config.get("item")
    if not isinstance(judge, Mapping) or not isinstance(item, str) or "score" not in record:
        raise ValueError(
            f"{file}: record {number} is not a judge score (no judge identity, item digest or "
            "score); write judge scores with `interp judge score` or `judge_all`"
        )
    identity = {**judge, "rubric": config.get("rubric", judge.get("rubric"))}
    value = record["score"]
    return {
        "identity": json.dumps(identity, sort_keys=True, default=str),
        "item": item,
        "value": math.nan if value is None else float(value),
        "no_score": str(record.get("no_score") or "no score") if value is None else None,
        "rubric_name": str(record.get("rubric_name", "")),
    }


def _short(identity: Mapping[str, Any]) -> str:
    model = str(identity.get("model", "?"))
    model = model if len(model) <= 24 else model[:10] + "…" + model[-10:]
    return f"{identity.get('backend', '?')}:{model}"


def load_scores(path: str | Path) -> pd.DataFrame:
    """A store's scores as rows of (judge, identity, item, value, no_score).

    The judge label is the store's directory name when it holds one judge, else the directory
    name plus each judge's backend and model (and rubric digest when two differ only there).
    """
    from interp.runs.store import read_records

    file = store_path(path)
    rows = []
    for number, record in enumerate(read_records(file), start=1):
        row = _unit(file, number, record)
        if row is not None:
            rows.append(row)
    if not rows:
        raise ValueError(f"{file} holds no scores yet; run `interp judge score` first")
    frame = pd.DataFrame(rows)
    name = file.parent.name if file.name == SCORES_FILE else file.stem
    identities = list(dict.fromkeys(frame["identity"]))
    if len(identities) == 1:
        labels = {identities[0]: name}
    else:
        parsed = {i: json.loads(i) for i in identities}
        rubric_names = frame.groupby("identity")["rubric_name"].first().to_dict()
        shorts = {i: _short(p) for i, p in parsed.items()}
        labels = {}
        for i, p in parsed.items():
            label = f"{name}/{shorts[i]}"
            if sum(s == shorts[i] for s in shorts.values()) > 1:  # same judge, other rubric
                same_name = [
                    j
                    for j in identities
                    if (shorts[j], rubric_names[j]) == (shorts[i], rubric_names[i])
                ]
                label += f" {rubric_names[i] or 'rubric'}"
                if len(same_name) > 1 or not rubric_names[i]:
                    label += f" {str(p.get('rubric', '?'))[:6]}"
            labels[i] = label
    frame.insert(0, "judge", frame["identity"].map(labels))
    return frame


def _frame(name: str, data: pd.DataFrame) -> pd.DataFrame:
    missing = {"item", "value"} - set(data.columns)
    if missing:
        raise ValueError(
            f"scores of {name!r} lack columns {sorted(missing)}; give 'item' (digest) and "
            "'value' (0-100, NaN for no score)"
        )
    out = data.loc[:, ["item", "value"]].copy()
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype(float)
    out["no_score"] = data.get("no_score", None)
    out.insert(0, "judge", name)
    return out


def collect(sources: Sequence[str | Path] | Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One long frame (judge, item, value, no_score) from stores or named DataFrames."""
    if isinstance(sources, Mapping):
        frames = [_frame(name, data) for name, data in sources.items()]
    else:
        frames = [load_scores(path) for path in sources]
        seen: dict[str, str] = {}
        for frame, path in zip(frames, sources, strict=True):
            for label in frame["judge"].unique():  # two dirs of the same name: use the path
                if label in seen and seen[label] != str(path):
                    frame.loc[frame["judge"] == label, "judge"] = f"{path}:{label}"
                seen.setdefault(label, str(path))
    long = pd.concat(frames, ignore_index=True)
    for judge, group in long.groupby("judge", sort=False):
        dup = group[group["item"].duplicated(keep=False)]
        clash = dup.groupby("item")["value"].nunique(dropna=False)
        if (clash > 1).any():
            item = clash[clash > 1].index[0]
            raise ValueError(
                f"judge {judge!r} has two different scores for item {item}; "
                "keep one score per item and judge"
            )
    long = long.drop_duplicates(["judge", "item"]).reset_index(drop=True)
    if long["judge"].nunique() < 2:
        raise ValueError(
            f"agreement needs at least two judges, got {long['judge'].nunique()} "
            f"({', '.join(map(str, long['judge'].unique()))}); give two or more score stores"
        )
    return long


@dataclass(frozen=True)
class Agreement:
    """Per-judge coverage and per-pair agreement (see module docstring)."""

    judges: pd.DataFrame  # judge, items, scored, no_score, no_score_rate, mean
    pairs: pd.DataFrame  # judge_a, judge_b, common, both_scored, pearson(_low/_high), ...
    threshold: float

    def table(self) -> str:
        """The two tables as aligned text."""
        judges = self.judges.assign(
            no_score_rate=self.judges["no_score_rate"].map(lambda v: f"{v:.1%}"),
            mean=self.judges["mean"].map(lambda v: "n/a" if math.isnan(v) else f"{v:.1f}"),
        )
        pairs = pd.DataFrame(
            {
                "judge_a": self.pairs["judge_a"],
                "judge_b": self.pairs["judge_b"],
                "n": self.pairs["both_scored"],
                "pearson [95% CI]": [_ci(r, "pearson") for _, r in self.pairs.iterrows()],
                "spearman [95% CI]": [_ci(r, "spearman") for _, r in self.pairs.iterrows()],
                f"kappa@{self.threshold:g} [95% CI]": [
                    _ci(r, "kappa") for _, r in self.pairs.iterrows()
                ],
            }
        )
        return judges.to_string(index=False) + "\n\n" + pairs.to_string(index=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "judges": self.judges.to_dict(orient="records"),
            "pairs": self.pairs.to_dict(orient="records"),
        }

    def save(self, path: str | Path) -> Path:
        """Write the tables as JSON (NaN written as null)."""
        from interp.io import output_file

        file = output_file(path, "agreement file")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(
            json.dumps(_nulls(self.to_dict()), indent=1, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        return file


def _ci(row: pd.Series, name: str) -> str:
    value = row[name]
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3f} [{row[name + '_low']:.3f}, {row[name + '_high']:.3f}]"


def _nulls(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value


def _estimate(kind: str, a: Any, b: Any, threshold: float, **kw: Any) -> stats.Estimate:
    nan = stats.Estimate(math.nan, math.nan, math.nan, len(a))
    try:
        if kind == "kappa":
            return stats.kappa(a, b, threshold, **kw)
        return stats.pearson(a, b, **kw) if kind == "pearson" else stats.spearman(a, b, **kw)
    except ValueError:  # too few items for this statistic
        return nan


def agreement(
    sources: Sequence[str | Path] | Mapping[str, pd.DataFrame],
    *,
    threshold: float = THRESHOLD,
    n_resamples: int = stats.N_RESAMPLES,
    seed: int = 0,
) -> Agreement:
    """Agreement of two or more judges on the items they share (see module docstring)."""
    long = collect(sources)
    judges = []
    for judge, group in long.groupby("judge", sort=False):
        scored = int(group["value"].notna().sum())
        judges.append(
            {
                "judge": judge,
                "items": len(group),
                "scored": scored,
                "no_score": len(group) - scored,
                "no_score_rate": (len(group) - scored) / len(group),
                "mean": float(group["value"].mean()) if scored else math.nan,
            }
        )
    wide = long.pivot(index="item", columns="judge", values="value")
    names = list(dict.fromkeys(long["judge"]))
    items_of = {name: set(long.loc[long["judge"] == name, "item"]) for name in names}
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = items_of[a] & items_of[b]
            common = wide.loc[wide.index.isin(shared), [a, b]]
            both = common.dropna()
            row: dict[str, Any] = {
                "judge_a": a,
                "judge_b": b,
                "common": len(common),
                "both_scored": len(both),
            }
            for kind in ("pearson", "spearman", "kappa"):
                est = _estimate(
                    kind,
                    both[a].to_numpy(),
                    both[b].to_numpy(),
                    threshold,
                    n_resamples=n_resamples,
                    seed=seed,
                )
                row.update({kind: est.value, f"{kind}_low": est.low, f"{kind}_high": est.high})
            pairs.append(row)
    return Agreement(pd.DataFrame(judges), pd.DataFrame(pairs), threshold)


def paired(sources: Sequence[str | Path] | Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Items × judges table of scores (NaN: not scored or no score), matched by item digest."""
    long = collect(sources)
    names = list(dict.fromkeys(long["judge"]))
    return long.pivot(index="item", columns="judge", values="value").loc[:, names]
