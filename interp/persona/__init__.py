"""Persona vectors (Chen et al. 2025, arXiv 2507.21509): trait specs, extraction, monitoring."""
