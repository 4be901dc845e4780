"""A tiny synthetic embedded model: a 2-layer Llama GGUF, and a child process that loads it.

The GGUF is written with the `gguf` package from the tiny test tokenizer and random float32
weights, so materializing it exercises the real path (transformers dequantizes it, we save an
HF directory) in a second instead of the ~15 s of SmolLM2.

`python -m tests.tiny_gguf GGUF LOG [--go FILE] [--pause FILE]` registers the model as the
embedded alias `tiny-gguf` and loads it with `interp.load_model`, printing the source
directory. Each call of its `locate` appends a line to LOG (one line per dequantization) and
then sleeps a second, so concurrent first loads overlap. `--go` waits for FILE to exist before
loading (a start barrier for concurrent processes). `--pause` creates FILE once the tokenizer
is written into the staging directory (the weights are written already, the completion marker
not yet) and then sleeps, so a test can kill the process at exactly that point.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

import numpy as np

from tests.tiny import tiny_tokenizer

ALIAS = "tiny-gguf"
LAYERS, D_MODEL, D_FF, HEADS, KV_HEADS = 2, 64, 128, 4, 2


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write a 2-layer Llama GGUF (float32 tensors, byte-level BPE tokenizer) to `path`."""
    import gguf

    tok = tiny_tokenizer(chat=True)
    state = json.loads(tok.backend_tokenizer.to_str())
    tokens = [""] * len(tok)
    for text, i in state["model"]["vocab"].items():
        tokens[i] = text
    specials = {added["content"] for added in state["added_tokens"]}
    for added in state["added_tokens"]:
        tokens[added["id"]] = added["content"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(D_MODEL)
    writer.add_feed_forward_length(D_FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(D_MODEL // HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in specials else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(tok.chat_template)
    rng = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    kv = KV_HEADS * D_MODEL // HEADS
    tensor("token_embd.weight", len(tokens), D_MODEL)
    for block in range(LAYERS):
        tensor(f"blk.{block}.attn_norm.weight", D_MODEL)
        tensor(f"blk.{block}.ffn_norm.weight", D_MODEL)
        tensor(f"blk.{block}.attn_q.weight", D_MODEL, D_MODEL)
        tensor(f"blk.{block}.attn_k.weight", kv, D_MODEL)
        tensor(f"blk.{block}.attn_v.weight", kv, D_MODEL)
        tensor(f"blk.{block}.attn_output.weight", D_MODEL, D_MODEL)
        tensor(f"blk.{block}.ffn_gate.weight", D_FF, D_MODEL)
        tensor(f"blk.{block}.ffn_up.weight", D_FF, D_MODEL)
        tensor(f"blk.{block}.ffn_down.weight", D_MODEL, D_FF)
    tensor("output_norm.weight", D_MODEL)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def register(gguf_path: Path, log: Path) -> None:
    """Add `tiny-gguf` to the embedded models; its `locate` logs each call to `log`."""
    from interp.embedded import EMBEDDED, EmbeddedModel

    def locate(workdir: Path) -> Path:
        with log.open("a") as out:
            out.write("dequantize\n")
        time.sleep(1.0)  # widen the window in which concurrent first loads overlap
        return gguf_path

    EMBEDDED[ALIAS] = EmbeddedModel(
        alias=ALIAS,
        hub_id="tests/tiny-gguf",
        architecture="LlamaForCausalLM",
        n_layers=LAYERS,
        d_model=D_MODEL,
        chat=True,
        package="gguf",  # any installed distribution: its version names the cache directory
        module="gguf",
        pip_args=("gguf",),
        quantization="F32 GGUF (synthetic test model)",
        locate=locate,
    )


def _pause_after_tokenizer_save(signal_file: Path) -> None:
    from transformers import PreTrainedTokenizerBase

    save = PreTrainedTokenizerBase.save_pretrained

    def save_then_pause(self, *args, **kwargs):
        out = save(self, *args, **kwargs)
        signal_file.touch()
        # killed here by the test. Short sleeps: Linux may hand the signal to one of torch's
        # threads, and Python runs its handler only when the main thread wakes, which one long
        # sleep would delay by up to its whole length
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return out

    PreTrainedTokenizerBase.save_pretrained = save_then_pause  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("--go", type=Path)
    parser.add_argument("--pause", type=Path)
    args = parser.parse_args()
    # ctrl-c raises KeyboardInterrupt here even when the test runner was started in the
    # background, whose children inherit SIGINT as ignored (Python then installs no handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    import interp

    register(args.gguf, args.log)
    if args.pause:
        _pause_after_tokenizer_save(args.pause)
    if args.go:
        deadline = time.monotonic() + 120
        while not args.go.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"start barrier {args.go} never appeared")
            time.sleep(0.02)
    model = interp.load_model(ALIAS, device="cpu")
    print(json.dumps({"source": model.source, "n_layers": model.n_layers}))


if __name__ == "__main__":
    main()
