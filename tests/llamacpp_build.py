"""Check that the installed llama.cpp build is portable: `python -m tests.llamacpp_build`.

The Makefile builds llama-cpp-python with a pinned x86-64 instruction set (AVX2, FMA, F16C; no
AVX-512, no AMX, no -march=native) so that one wheel runs on any AVX2 CPU. A build tuned for
its own machine is the one that segfaulted on an AMX CPU (ggml-org/llama.cpp#20824). This prints
`llama_print_system_info()` and exits non-zero, saying how to rebuild, if the build has:

- any AMX or AVX-512 feature, or AVX-VNNI: pinned off, so only a native or hand-made build has
  them (on a CPU that has them, native tuning shows exactly these);
- no AVX2: the pinned baseline is missing, so the build is not ours.

The set-up runs it after installing (Makefile), and tests/integration/test_llama_cpp_build.py
runs it in a child too. Given an embedded model's alias (`... smollm2-135m-instruct`) it also
completes one prompt greedily with that model's GGUF in a child process, so a build that crashes
at its first decode fails here, with the signal named.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

FORBIDDEN = ("AMX", "AVX512", "AVX_VNNI")
REQUIRED = ("AVX", "AVX2", "FMA", "F16C")
REBUILD = (
    "rebuild it with the Makefile's portable flags: `.venv/bin/pip uninstall -y "
    "llama-cpp-python && rm -f .venv/.installed && make setup` (see LLAMA_CMAKE_ARGS)"
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


def main(argv: list[str]) -> int:
    info = system_info()
    print(f"llama.cpp system info: {info.strip()}")
    wrong = problems(info)
    if wrong:
        for line in wrong:
            print(f"error: {line}", file=sys.stderr)
        print(f"fix: {REBUILD}", file=sys.stderr)
        return 1
    if argv:
        from interp.embedded import EMBEDDED
        from tests.llamacpp import LlamaChildError, run_child

        prompt = "The capital of France is"
        with tempfile.TemporaryDirectory(prefix="llama-check-") as scratch:
            gguf = EMBEDDED[argv[0]].gguf_path(Path(scratch))
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
