"""Tiny random models written to a local directory, so unit tests need no download.

Each directory is a real Hugging Face checkpoint (config, safetensors, tokenizer) that
`interp.load_model(path)` loads through the same code path as a Hub model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerFast

CORPUS = [
    "The capital of France is Paris.",
    "Tell me about the ocean and the mountains.",
    "Why did the chicken cross the road? To get to the other side.",
    "Trial 1: Do you detect an injected thought? If so, what is it about?",
    "I am an interpretability researcher studying transformer models.",
    "Wait, let me check that again.\n\nThe final answer is 42.",
    "(A) Yes\n(B) No\nAnswer: (A)",
    "Snowflakes drifted lazily from the gray sky.",
    "You are a helpful, honest and concise assistant.",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


def tiny_tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE (vocab ~400) with a BOS post-processor and optionally a chat template."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(CORPUS, trainer=trainer)
    bos = core.token_to_id("<|bos|>")
    if not chat:  # base models prepend BOS themselves; chat templates would write it
        core.post_processor = processors.TemplateProcessing(
            single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos)]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


ARCHITECTURES = ("llama", "gemma3", "qwen2", "gpt_neox", "olmo2", "granite")


def tiny_config(arch: str, tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """A 4-layer, d_model 64 config of `arch`; see `ARCHITECTURES`."""
    ids = dict(
        vocab_size=len(tok),
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    common = dict(
        **ids,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
    )
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, architectures=["LlamaForCausalLM"])
    if arch == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(
            **common,
            sliding_window=8,
            architectures=["Gemma3ForCausalLM"],
            layer_types=[
                "sliding_attention",
                "sliding_attention",
                "sliding_attention",
                "full_attention",
            ],
        )
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common, architectures=["Qwen2ForCausalLM"])
    if arch == "olmo2":
        from transformers import Olmo2Config

        return Olmo2Config(**common, architectures=["Olmo2ForCausalLM"])
    if arch == "granite":
        from transformers import GraniteConfig

        # multipliers away from 1, so a site that forgets one is visibly wrong
        return GraniteConfig(
            **common,
            residual_multiplier=0.25,
            embedding_multiplier=3.0,
            attention_multiplier=0.125,
            logits_scaling=2.0,
            architectures=["GraniteForCausalLM"],
        )
    if arch == "gpt_neox":  # Pythia layout: parallel attention and MLP
        from transformers import GPTNeoXConfig

        return GPTNeoXConfig(
            **ids,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            use_parallel_residual=True,
            tie_word_embeddings=False,
            architectures=["GPTNeoXForCausalLM"],
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")


def write_tiny_model(
    directory: Path, arch: str = "llama", chat: bool = True, seed: int = 0
) -> Path:
    """Write a random 4-layer model of `arch` (one of `ARCHITECTURES`) with its tokenizer."""
    tok = tiny_tokenizer(chat)
    config = tiny_config(arch, tok)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # larger weights than the default init, so features differ by input
        for param in model.parameters():
            if param.ndim == 2:
                param.normal_(0, 0.2)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
