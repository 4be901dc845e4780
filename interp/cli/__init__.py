"""The `interp` command line (one Typer app). Importing it must not import torch."""
