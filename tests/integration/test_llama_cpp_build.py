"""The llama.cpp build is portable, and a native crash fails one test, not the pytest run.

The checker (tests/llamacpp_build.py) reads llama.cpp's system info: a build with AMX, AVX-512
or AVX-VNNI (native tuning on a CPU that has them) is refused, and so is one without the AVX2
baseline. The crash handling (tests/llamacpp.py) runs llama.cpp in a child: a child killed by
SIGSEGV raises with the signal named and the child's last lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from interp.embedded import EMBEDDED
from tests.llamacpp import LlamaChildError, describe_exit, needs_llama_cpp, run_child
from tests.llamacpp_build import differs_from_wheel, features, installed_libraries, problems

ROOT = Path(__file__).resolve().parents[2]

# the system info of the pinned build (measured on this project's AMD EPYC, AVX-512 capable)
PORTABLE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
# what a native build prints on an AVX-512 + AMX Xeon (the one that segfaulted)
NATIVE_AMX = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)


def test_the_checker_refuses_amx_avx512_and_a_missing_baseline() -> None:
    assert features(PORTABLE)["AVX2"] is True and problems(PORTABLE) == []
    wrong = problems(NATIVE_AMX)
    assert len(wrong) == 1
    for name in ("AMX_INT8", "AVX512", "AVX512_BF16", "AVX_VNNI"):
        assert name in wrong[0]
    assert "native tuning" in wrong[0]
    # a feature printed as 0 is off, not on
    assert problems(PORTABLE + "AMX_INT8 = 0 | AVX512 = 0 | ") == []
    no_avx2 = problems(PORTABLE.replace("AVX2 = 1", "AVX2 = 0"))
    assert len(no_avx2) == 1 and "AVX2" in no_avx2[0] and "not the pinned" in no_avx2[0]


def test_the_checker_finds_libraries_that_are_not_the_wheels(tmp_path: Path) -> None:
    wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llama_cpp/lib/libggml-cpu.so", b"portable build")
        archive.writestr("llama_cpp/lib/libllama.so", b"llama")
        archive.writestr("llama_cpp/__init__.py", b"")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libggml-cpu.so").write_bytes(b"portable build")
    (lib / "libllama.so").write_bytes(b"llama")
    assert differs_from_wheel(wheel, lib) == []
    (lib / "libggml-cpu.so").write_bytes(b"native build")
    assert differs_from_wheel(wheel, lib) == ["libggml-cpu.so"]
    (lib / "libllama.so").unlink()
    assert differs_from_wheel(wheel, lib) == ["libggml-cpu.so", "libllama.so"]
    # versioned names (libggml-cpu.so.0, the one that loads) are compared too
    versioned = tmp_path / "versioned.whl"
    with zipfile.ZipFile(versioned, "w") as archive:
        archive.writestr("llama_cpp/lib/libggml-cpu.so.0.25.3", b"portable build")
    (lib / "libggml-cpu.so.0.25.3").write_bytes(b"native build")
    assert differs_from_wheel(versioned, lib) == ["libggml-cpu.so.0.25.3"]
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("llama_cpp/__init__.py", b"")
    with pytest.raises(ValueError, match="holds no llama_cpp/lib"):
        differs_from_wheel(empty, lib)


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-11) == "killed by SIGSEGV (signal 11)"
    assert describe_exit(-4) == "killed by SIGILL (signal 4)"
    assert describe_exit(3) == "exit code 3"


@pytest.fixture(scope="module")
def gguf() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as scratch:
        yield EMBEDDED["smollm2-135m-instruct"].gguf_path(Path(scratch))


@needs_llama_cpp
@pytest.mark.embedded
@pytest.mark.slow
def test_the_installed_build_is_portable_and_completes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.llamacpp_build", "smollm2-135m-instruct"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    info = next(line for line in done.stdout.splitlines() if "system info" in line)
    assert "AVX2 = 1" in info and "AMX" not in info and "AVX512" not in info
    assert "Paris" in done.stdout  # greedy: "The capital of France is" -> " Paris."


@needs_llama_cpp
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_the_installed_binaries_hold_no_avx512_or_amx_instruction() -> None:
    """Independent of what llama.cpp says of itself: disassemble its CPU backend and count
    instructions on AVX-512 registers (zmm, k masks) and AMX tiles (tdpb*, tileload*). The
    library is found without loading it: loading a bad build could crash this process."""
    lib = installed_libraries()
    found = sorted({path.resolve() for path in lib.glob("libggml-cpu.so*")})
    assert found, f"no libggml-cpu.so under {lib}"
    text = "".join(
        subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        for path in found
    )
    counts = {
        "avx2 (ymm)": len(re.findall(r"%ymm\d", text)),
        "avx-512 (zmm)": len(re.findall(r"%zmm\d", text)),
        "avx-512 (k masks)": len(re.findall(r"%k[0-7]\b", text)),
        "amx (tiles)": len(re.findall(r"\b(tdpb\w*|tileloadd\w*|ldtilecfg)\b", text)),
    }
    print(f"\n{', '.join(path.name for path in found)}: {counts}")
    assert counts["avx-512 (zmm)"] == counts["avx-512 (k masks)"] == 0, counts
    assert counts["amx (tiles)"] == 0, counts
    assert counts["avx2 (ymm)"] > 1000, counts  # the AVX2 kernels are there


@needs_llama_cpp
@pytest.mark.embedded
@pytest.mark.slow
def test_a_llama_cpp_child_killed_by_sigsegv_raises_with_the_signal(
    gguf: Path, tmp_path: Path
) -> None:
    request = {"job": "complete", "gguf": str(gguf), "prompt": "Hi", "max_tokens": 1}
    with pytest.raises(LlamaChildError) as err:
        run_child({**request, "crash_after_load": True}, tmp_path)
    message = str(err.value)
    assert "killed by SIGSEGV (signal 11)" in message
    assert "model loaded" in message  # the child's last lines come with it
    # the same job without the crash completes: the failure was the signal, not the request
    out = run_child(request, tmp_path / "ok")
    assert (out / "result.json").is_file()


@needs_llama_cpp
@pytest.mark.embedded
@pytest.mark.slow
def test_a_segfault_fails_one_test_and_the_pytest_run_goes_on(gguf: Path, tmp_path: Path) -> None:
    suite = tmp_path / "test_crash.py"
    suite.write_text(
        textwrap.dedent(
            f"""
            from tests.llamacpp import run_child

            def test_llama_cpp_segfaults(tmp_path):
                request = {{"job": "complete", "gguf": {str(gguf)!r}, "prompt": "Hi",
                            "max_tokens": 1, "crash_after_load": True}}
                run_child(request, tmp_path)

            def test_after_the_crash():
                assert 1 + 1 == 2
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    print(output[-2000:])
    assert done.returncode == 1, output  # tests failed (2 would be an interrupted run)
    assert "1 failed, 1 passed" in output
    assert "killed by SIGSEGV (signal 11)" in output
    assert "FAILED test_crash.py::test_llama_cpp_segfaults" in output
