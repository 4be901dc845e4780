"""Steering: intervention values and factories, the per-row engine, installers and generation.

`interventions` builds edits (add / ablate / set / clamp), `engine` compiles one list of them per
batch row into batched ops, `installers` puts those ops on a model's hooks, and `generation`
runs batched, KV-cached generation and next-token readouts under them.
"""
