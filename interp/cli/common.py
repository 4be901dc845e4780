"""Shared pieces of the CLI: the Typer app, the error console and `user_errors`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from interp.embedded import EmbeddedModelMissing

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="interp: capture, vectors and steering for interpretability research.",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad input, missing files or models) into one clear line."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError, EmbeddedModelMissing) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
