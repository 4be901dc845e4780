"""Check that the installed llama.cpp build is portable: `python -m tests.llamacpp_build`.

The Makefile builds llama-cpp-python with a pinned x86-64 instruction set (AVX2, FMA, F16C,
BMI2; no AVX-512, no AMX, no -march=native) so that one wheel runs on any AVX2 CPU. A build tuned
for its own machine is the one that segfaulted on an AMX CPU (ggml-org/llama.cpp#20824). This
prints `llama_print_system_info()` and exits non-zero, saying how to rebuild, if the build has:

- any AMX or AVX-512 feature, or AVX-VNNI: pinned off, so only a native or hand-made build has
  them (on a CPU that has them, native tuning shows exactly these);
- not all of AVX, AVX2, FMA, F16C and BMI2: the pinned baseline is missing, so it is not ours.

System info alone cannot tell a native build made on an AVX2-only CPU from the pinned one (both
print the same features). So `--wheel PATH` (the Makefile passes the portable wheel it built)
also requires the installed native libraries to be byte for byte those in that wheel.

The set-up runs it after installing (Makefile), and tests/integration/test_llama_cpp_build.py
runs it in a child too. Given an embedded model's alias (`... smollm2-135m-instruct`) it also
completes one prompt greedily with that model's GGUF in a child process, so a build that crashes
at its first decode fails here, with the signal named.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

FORBIDDEN = ("AMX", "AVX512", "AVX_VNNI")
REQUIRED = ("AVX", "AVX2", "FMA", "F16C", "BMI2")
REBUILD = (
    "reinstall the portable build: `rm -f .venv/.installed && make setup` installs the wheel "
    "that the Makefile built with LLAMA_CMAKE_ARGS (in ~/.cache/interp/wheels/; delete that "
    "folder to rebuild it)"
)


def features(system_info: str) -> dict[str, bool]:
    """{'AVX2': True, ...} from llama.cpp's 'CPU : SSE3 = 1 | AVX = 1 | ...' text."""
    return {
        name: value == "1" for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = (\d+)", system_info)
    }


def problems(system_info: str) -> list[str]:
    """What makes this build non-portable; empty when it is the pinned AVX2 build."""
    found = features(system_info)
    on = sorted(name for name, enabled in found.items() if enabled)
    bad = [name for name in on if name.startswith(FORBIDDEN)]
    missing = [name for name in REQUIRED if not found.get(name)]
    out = []
    if bad:
        out.append(
            f"llama.cpp was built with {', '.join(bad)}: native tuning or AMX/AVX-512 is on, and "
            "such a build crashes or refuses to load on another CPU"
        )
    if missing:
        out.append(
            f"llama.cpp lacks {', '.join(missing)}: it is not the pinned portable AVX2 build"
        )
    return out


def system_info() -> str:
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def installed_libraries() -> Path:
    """The folder of llama-cpp-python's native libraries, found without loading them."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llama-cpp-python is not installed; `make setup` installs it")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def differs_from_wheel(wheel: Path, lib: Path) -> list[str]:
    """The native libraries in `wheel` (every `.so` and `.so.N…`) whose installed copy under
    `lib` is missing or differs; raises if the wheel holds none."""
    out, compared = [], 0
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            # libllama.so loads libggml.so.0, which loads libggml-cpu.so.0: every version
            if not name.startswith("llama_cpp/lib/") or not re.search(r"\.so(\.\d+)*$", name):
                continue
            compared += 1
            installed = lib / Path(name).name
            want = hashlib.sha256(archive.read(name)).hexdigest()
            got = hashlib.sha256(installed.read_bytes()).hexdigest() if installed.is_file() else ""
            if got != want:
                out.append(Path(name).name)
    if compared == 0:
        raise ValueError(f"{wheel} holds no llama_cpp/lib/*.so*: not a llama-cpp-python wheel")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.llamacpp_build")
    parser.add_argument("model", nargs="?", help="embedded model alias: complete one prompt")
    parser.add_argument("--wheel", type=Path, help="the portable wheel that must be installed")
    args = parser.parse_args(argv)
    info = system_info()
    print(f"llama.cpp system info: {info.strip()}")
    wrong = problems(info)
    if args.wheel is not None:
        if not args.wheel.is_file():
            wrong.append(f"the portable wheel {args.wheel} does not exist")
        else:
            changed = differs_from_wheel(args.wheel, installed_libraries())
            if changed:
                wrong.append(
                    f"the installed {', '.join(changed)} differ from the portable wheel "
                    f"{args.wheel.name}: another build of llama.cpp is installed"
                )
            else:
                print(f"llama.cpp libraries: identical to {args.wheel}")
    if wrong:
        for line in wrong:
            print(f"error: {line}", file=sys.stderr)
        print(f"fix: {REBUILD}", file=sys.stderr)
        return 1
    if args.model:
        from interp.embedded import EMBEDDED
        from tests.llamacpp import LlamaChildError, run_child

        prompt = "The capital of France is"
        with tempfile.TemporaryDirectory(prefix="llama-check-") as scratch:
            gguf = EMBEDDED[args.model].gguf_path(Path(scratch))
            request = {"job": "complete", "gguf": str(gguf), "prompt": prompt, "max_tokens": 4}
            try:
                out = run_child(request, Path(scratch), timeout=300)
            except LlamaChildError as err:
                print(f"error: {err}\nfix: {REBUILD}", file=sys.stderr)
                return 1
            text = json.loads((out / "result.json").read_text())["text"]
        print(f"llama.cpp completes {prompt!r} -> {text!r}")
    print("llama.cpp build: portable (no AMX, no AVX-512, no native tuning)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
