"""The persona results table of figures/README.md, from the saved results (no model is run).

For each model and trait under results/persona/: the paired-filter count, the classifier
judge's held-out AUROC, the chosen steering setting (largest trait gain with mean coherence
>= 75) and the strongest suppression under the same gate, the side cost of the choice on
neutral text, and the monitoring correlations (overall r, system prompts and many-shot).
Prints Markdown; `python experiments/persona_table.py > table.md`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from interp.persona import select as ps


def _monitor(out: Path) -> dict[str, str]:
    path = out / "monitor_correlations.csv"
    if not path.exists():
        return {"system": "–", "many-shot": "–"}
    table = pd.read_csv(path)
    overall = table[table["condition"] == "overall"].set_index("experiment")
    return {e: f"{row.r:.2f} [{row.low:.2f}, {row.high:.2f}]" for e, row in overall.iterrows()}


def _row(model: str, out: Path) -> dict[str, Any] | None:
    selection = out / "selection.json"
    if not selection.exists():
        return None
    summary = json.loads(selection.read_text())
    table = pd.DataFrame(summary["table"])
    elicit = ps.choose(table)
    suppress = ps.choose(table, direction="suppress")
    extraction = summary["extraction"]
    auroc = (extraction.get("classifier") or {}).get("heldout_auroc")
    cost = summary.get("side_cost") or {}
    base = float(table[table["coef"] == 0.0]["coherence"].mean())

    def setting(choice: ps.Choice | None) -> str:
        if choice is None:
            return "none passes the gate"
        return (
            f"block {choice.layer} × {choice.coef:g} (raw {choice.raw_coef:.2g}): "
            f"{choice.baseline:.0f} → {choice.trait:.0f}, coherence {choice.coherence:.0f}"
        )

    monitor = _monitor(out)
    return {
        "model": model,
        "trait": out.name,
        "kept pairs": extraction["kept_pairs"],
        "judge AUROC": f"{auroc:.2f}" if auroc is not None else "–",
        "unsteered coherence": f"{base:.0f}",
        "elicit (trait 0-100)": setting(elicit),
        "suppress": setting(suppress),
        "side cost KL / ppl×": (
            f"{cost['kl']:.3f} / {cost['ppl_ratio']:.2f}" + ("" if cost.get("gated") else " *")
            if cost
            else "–"
        ),
        "monitor r, system": monitor.get("system", "–"),
        "monitor r, many-shot": monitor.get("many-shot", "–"),
    }


def main(
    results: Annotated[Path, typer.Option(help="results root")] = Path("results"),
) -> None:
    rows = []
    for model_dir in sorted((results / "persona").iterdir()):
        for out in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            row = _row(model_dir.name, out)
            if row is not None:
                rows.append(row)
    if not rows:
        raise SystemExit(f"no persona results under {results / 'persona'}")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    typer.run(main)
