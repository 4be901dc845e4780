"""llama.cpp in a child process: `python -m tests.llamacpp_child REQUEST.json OUT_DIR`.

llama.cpp is native code: a bad build (native tuning, AMX on the wrong CPU) dies with SIGSEGV
or SIGILL inside a decode, and in the pytest process that would end the whole run. So every
in-process llama.cpp call of the tests runs here, in a child that `tests.llamacpp.run_child`
starts and watches: a crash fails the one test that asked, naming the signal.

The request (JSON) names a GGUF and one job:
- `{"job": "logprobs", "rows": [[id, ...], ...], "control_vector": path | null}`: the
  next-token log-probabilities after each row over the full vocabulary, written to
  OUT_DIR/logprobs.safetensors; with a control-vector GGUF loaded as llama.cpp's loader does,
  and its block range in OUT_DIR/result.json.
- `{"job": "complete", "prompt": str, "max_tokens": int}`: a greedy completion, in result.json.
- `"crash_after_load": true` kills the child with SIGSEGV once the model is loaded (tests of
  the crash handling).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _llama(gguf: str, logits_all: bool) -> Any:
    import llama_cpp

    return llama_cpp.Llama(
        model_path=gguf,
        n_ctx=512,
        n_threads=2,
        n_threads_batch=2,
        seed=0,
        logits_all=logits_all,  # keep each position's logits in `scores`
        verbose=False,
    )


def apply_control_vector(llm: Any, path: str) -> tuple[int, int]:
    """Load a control-vector GGUF the way llama.cpp's own loader does; returns the block range.

    llama.cpp adds `direction.N` to the output of block N for il_start <= N <= il_end; its buffer
    holds n_embd floats per block starting at block 1 (block 0 has no slot).
    """
    import gguf as gguf_lib
    import llama_cpp

    reader = gguf_lib.GGUFReader(path)
    directions = {
        int(t.name.split(".", 1)[1]): np.asarray(t.data, dtype=np.float32).reshape(-1)
        for t in reader.tensors
        if t.name.startswith("direction.")
    }
    n_embd = int(llama_cpp.llama_model_n_embd(llm.model))
    first, last = min(directions), max(directions)
    if first < 1:
        raise ValueError(f"direction.{first}: block 0 has no control-vector slot in llama.cpp")
    data = np.zeros(n_embd * last, dtype=np.float32)  # block l at [(l-1)*n_embd, l*n_embd)
    for block, vector in directions.items():
        data[(block - 1) * n_embd : block * n_embd] += vector
    pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    rc = llama_cpp.llama_set_adapter_cvec(llm.ctx, pointer, data.size, n_embd, first, last)
    if rc != 0:
        raise RuntimeError(f"llama_set_adapter_cvec returned {rc}")
    llm._interp_cvec = data  # keep the buffer alive as long as the context
    return first, last


def logprobs(llm: Any, rows: list[list[int]]) -> np.ndarray:
    """Log-probabilities [row, vocab] (float64) of the next token after each row."""
    out = []
    for ids in rows:
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        shifted = logits - logits.max()
        out.append(shifted - np.log(np.exp(shifted).sum()))
    return np.stack(out)


def main(request_path: str, out_dir: str) -> None:
    request = json.loads(Path(request_path).read_text())
    out = Path(out_dir)
    job = request["job"]
    llm = _llama(request["gguf"], logits_all=job == "logprobs")
    print("model loaded", flush=True)
    if request.get("crash_after_load"):
        os.kill(os.getpid(), signal.SIGSEGV)
    result: dict[str, Any] = {}
    if job == "logprobs":
        from safetensors.numpy import save_file

        if request.get("control_vector"):
            result["blocks"] = list(apply_control_vector(llm, request["control_vector"]))
        save_file({"logprobs": logprobs(llm, request["rows"])}, str(out / "logprobs.safetensors"))
    elif job == "complete":
        reply = llm.create_completion(
            request["prompt"], max_tokens=int(request["max_tokens"]), temperature=0.0
        )
        result["text"] = reply["choices"][0]["text"]
    else:
        raise ValueError(f"unknown job {job!r}: use 'logprobs' or 'complete'")
    llm.close()
    (out / "result.json").write_text(json.dumps(result))
    print("done", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.llamacpp_child REQUEST.json OUT_DIR")
    main(sys.argv[1], sys.argv[2])
