"""Runs: the resumable run store (one record per finished unit of work) and batched sweeps."""
