"""Reading the CLI's output in tests: a fixable error prints as one `error: ...` line."""

from __future__ import annotations


def one_error_line(output: str) -> str:
    """The single `error: ...` line of `output`; fails on none, several, or a traceback."""
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]
