"""Shared pieces of the CLI: the Typer app, the error console and `user_errors`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from interp.embedded import EmbeddedModelMissing
from interp.eval.endpoint import EndpointError

DEBUG_ENV = "INTERP_DEBUG"


class _Group(TyperGroup):
    """The app's group: a parameter error names the value it was given.

    Typer checks `min=`/`max=` through pydantic, whose message ("Input should be greater than
    or equal to 1") does not repeat the value; it is in the pydantic error that the Typer
    error carries, so it is added here: "... greater than or equal to 1, got 0".
    """

    def invoke(self, ctx: Any) -> Any:  # a click Context (vendored by newer Typer)
        try:
            return super().invoke(ctx)
        except typer.BadParameter as err:
            given = _given(err.__cause__)
            if given is not None and "got" not in err.message:
                err.message = f"{err.message}, got {given}"
            raise


def _given(cause: BaseException | None) -> str | None:
    """The input of a pydantic validation error, as the user typed it; None for other errors."""
    errors = getattr(cause, "errors", None)
    if not callable(errors):
        return None
    try:
        found = [e["input"] for e in errors() if "input" in e]
    except (TypeError, KeyError):
        return None
    if not found:
        return None
    value = found[0]
    plain = isinstance(value, str) and value.strip() == value and value != ""
    return value if plain else repr(value)  # quoted where spaces or emptiness would hide it


app = typer.Typer(
    cls=_Group,
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
