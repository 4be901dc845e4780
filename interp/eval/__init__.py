"""Evaluation: scorers and metrics for steered generations (judges and statistics land here)."""
