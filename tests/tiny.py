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


def write_tiny_model(
    directory: Path, arch: str = "llama", chat: bool = True, seed: int = 0
) -> Path:
    """Write a random 4-layer model of `arch` ("llama" or "gemma3") with its tokenizer."""
    tok = tiny_tokenizer(chat)
    common = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    config: PretrainedConfig
    if arch == "llama":
        from transformers import LlamaConfig

        config = LlamaConfig(**common, architectures=["LlamaForCausalLM"])
    elif arch == "gemma3":
        from transformers import Gemma3TextConfig

        config = Gemma3TextConfig(
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
    else:
        raise ValueError(arch)
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
