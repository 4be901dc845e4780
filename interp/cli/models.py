"""`interp models`: the embedded models."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from interp.cli.common import app
from interp.embedded import DEFAULT_MODEL, EMBEDDED, materialized_dir


@app.command()
def models() -> None:
    """List the embedded models: dimensions, install state and where each loads from."""
    table = Table(title="Embedded models (offline). Any HF directory or Hub id also works.")
    for column in ("alias", "stands for", "layers", "d_model", "chat", "weights", "loads from"):
        table.add_column(column)
    for alias, model in EMBEDDED.items():
        if not model.installed():
            where = f"[red]not installed[/]: {model.install}"
        elif (materialized_dir(model) / "interp-embedded.json").exists():
            where = str(materialized_dir(model))
        else:
            where = f"package {model.package} (dequantized on first load)"
        name = f"{alias} (default)" if alias == DEFAULT_MODEL else alias
        table.add_row(
            name,
            model.hub_id,
            str(model.n_layers),
            str(model.d_model),
            "yes" if model.chat else "no",
            model.quantization,
            where,
        )
    Console(width=None if Console().is_terminal else 160).print(table)
