"""The `interp` command: one Typer app, `interp <verb>` or `interp <group> <verb>`.

Each command group lives in its own module and registers itself on the shared app when imported.
Commands import torch and the models inside their bodies, so `interp --help` stays fast.
"""

from __future__ import annotations

from interp.cli import (  # noqa: F401
    capture,
    entities,
    inject,
    judge,
    models,
    persona,
    sae,
    steer,
    vectors,
)
from interp.cli.common import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
