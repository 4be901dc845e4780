"""Shared fixtures. Shapes are checked at run time in tests: jaxtyping + beartype wrap every
annotated function in `interp` (no cost outside the test suite)."""

from __future__ import annotations

import os
from pathlib import Path

from jaxtyping import install_import_hook

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

with install_import_hook("interp", "beartype.beartype"):
    # every module is imported under the hook, so every annotation is enforced in tests
    import importlib
    import pkgutil

    import interp

    for _module in pkgutil.walk_packages(interp.__path__, "interp."):
        importlib.import_module(_module.name)

import pytest
import torch

from tests.tiny import write_tiny_model

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", chat=True)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"), "gemma3", chat=False)


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> interp.Model:
    return interp.load_model(str(tiny_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_base(tiny_base_dir: Path) -> interp.Model:
    return interp.load_model(str(tiny_base_dir), device="cpu")


@pytest.fixture(scope="session")
def smollm() -> interp.Model:
    return interp.load_model("smollm2-135m-instruct", device="cpu")
