"""Shared pieces of the CLI: the Typer app, the error console and `user_errors`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import typer
from rich.console import Console

from interp.embedded import EmbeddedModelMissing
from interp.eval.endpoint import EndpointError

DEBUG_ENV = "INTERP_DEBUG"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=(
        "interp: capture, vectors and steering for interpretability research.\n\n"
        f"Errors you can fix print as one line; set {DEBUG_ENV}=1 to get the full traceback."
    ),
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def debugging() -> bool:
    """Whether `INTERP_DEBUG` asks for full tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad input, missing files or models) into one clear line."""
    try:
        yield
    except (
        ValueError,
        KeyError,
        FileNotFoundError,
        EmbeddedModelMissing,
        ArithmeticError,
        EndpointError,
    ) as err:
        # ArithmeticError: FloatingPointError from an edit that overflowed, named in the message;
        # EndpointError: a server down, a wrong key or URL (the message names the variable)
        if debugging():
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
