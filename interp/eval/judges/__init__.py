"""Judges: one interface for API, local and offline judges (see `base`), rubrics as data."""
