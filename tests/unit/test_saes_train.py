"""The offline SAE recipe's parts, against computations written here: corpus cleaning and
provenance, per-token collection (HF hidden states, position 0 left out, norm outliers dropped),
SAELens training on planted sparse data, and the quality metrics (explained variance, spliced
and mean-ablated LM loss)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from interp.saes.collect import collect
from interp.saes.corpus import clean_paragraph, read_corpus
from interp.saes.evaluate import reconstruction_stats, spliced_losses
from interp.saes.train import TrainConfig, train_sae
from tests.tolerance import FP32, assert_close

PROSE = (
    "The ocean covers most of the planet, and its currents carry heat from the tropics "
    "towards the poles over many years."
)


def test_clean_paragraph_keeps_prose_and_drops_markup():
    assert clean_paragraph(PROSE) == PROSE
    assert clean_paragraph(".. note::\n   Something") is None
    assert clean_paragraph("Title\n=====") is None
    assert clean_paragraph("   indented code block = 1 + 2 + 3 + 4 + 5 + 6") is None
    assert clean_paragraph("Too short.") is None
    roles = "Call :func:`os.path.join <joiner>` and read ``the docs`` about it before you start it"
    assert (
        clean_paragraph(roles)
        == "Call os.path.join and read the docs about it before you start it."
    )


def test_read_corpus_packs_paragraphs_per_file_and_records_provenance(tmp_path):
    (tmp_path / "a.txt").write_text(f"{PROSE}\n\n.. index:: x\n\n{PROSE}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.rst").write_text(PROSE)
    (tmp_path / "c.py").write_text(PROSE)  # not a text file of the corpus
    corpus = read_corpus(tmp_path, package=None, doc_words=25)
    assert corpus.documents == [f"{PROSE} {PROSE}", PROSE]
    info = corpus.provenance()
    assert info["files"] == 2 and info["documents"] == 2 and info["package"] is None
    assert info["text_sha256_16"] == read_corpus(tmp_path, package=None, doc_words=25).digest
    train, held = corpus.split(0.5)
    assert sorted(train.documents + held.documents) == sorted(corpus.documents)
    with pytest.raises(FileNotFoundError, match=r"corpus directory .*nope does not exist"):
        read_corpus(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"held_out must be a fraction"):
        corpus.split(1.5)


def test_collect_reads_every_token_but_the_first(tiny, tiny_dir):
    docs = ["The capital of France is Paris.", "Tell me about the ocean and the mountains."]
    got = collect(tiny, docs, [1, 2], batch_size=1, chunk=1, sink_ratio=100.0, dtype=torch.float32)
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    for layer in (1, 2):
        rows = []
        for doc in docs:
            ids = tiny.tokenizer(doc, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                rows.append(hf(ids, output_hidden_states=True).hidden_states[layer + 1][0, 1:])
        assert_close(got.acts[layer], torch.cat(rows), rel=FP32, what=f"block {layer}")
    assert got.tokens_seen == sum(len(tiny.tokenizer(d)["input_ids"]) - 1 for d in docs)
    capped = collect(tiny, docs, [2], max_tokens=5, sink_ratio=100.0)
    assert capped.acts[2].shape[0] == 5
    strict = collect(tiny, docs, [2], sink_ratio=1.0, dtype=torch.float32)
    norms = got.acts[2].norm(dim=-1)
    assert strict.acts[2].shape[0] == int((norms <= norms.median()).sum())
    assert strict.sinks_dropped[2] == int((norms > norms.median()).sum())


def test_saelens_training_recovers_planted_sparse_features():
    torch.manual_seed(0)
    d, n_features, n = 32, 24, 6000
    features = F.normalize(torch.randn(n_features, d), dim=-1)
    codes = torch.zeros(n, n_features)
    for row in range(n):
        chosen = torch.randperm(n_features)[:3]
        codes[row, chosen] = torch.rand(3) * 4 + 1
    x = codes @ features + 0.5
    sae, seconds = train_sae(
        x[:5000], TrainConfig(d_sae=48, k=4, epochs=20, batch_size=250, lr=4e-3)
    )
    ev, l0, density = reconstruction_stats(sae, x[5000:])
    assert ev > 0.95 and l0 == pytest.approx(4.0) and seconds > 0
    assert density.shape == (48,) and float(density.sum()) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="k=64 is larger than d_sae=48"):
        TrainConfig(d_sae=48, k=64)
    with pytest.raises(ValueError, match="only 10 activations for batch_size 250"):
        train_sae(x[:10], TrainConfig(d_sae=48, k=4, batch_size=250))


@dataclass
class _Cfg:
    d_sae: int


class Identity:
    """An 'SAE' that reconstructs perfectly: splicing it in must leave the loss unchanged."""

    cfg = _Cfg(8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f


def test_spliced_and_mean_ablated_losses(tiny, tiny_dir):
    texts = ["The capital of France is Paris.", "Why did the chicken cross the road?"]
    mean = torch.randn(tiny.d_model)
    clean, spliced, ablated, count = spliced_losses(
        tiny, Identity(), texts, tiny.hook_name("resid_post", 1), mean, batch_size=2
    )
    assert spliced == pytest.approx(clean, rel=FP32)  # losses of ~log(vocab)
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()

    def replace(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[:, 1:] = mean
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    totals = [0.0, 0.0]
    n = 0
    for text in texts:
        ids = tiny.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            plain = hf(ids).logits
            handle = hf.model.layers[1].register_forward_hook(replace)
            try:
                edited = hf(ids).logits
            finally:
                handle.remove()
        for i, logits in enumerate((plain, edited)):
            totals[i] += float(F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum"))
        n += ids.shape[1] - 1
    assert count == n
    assert_close(clean, totals[0] / n, rel=FP32, what="clean loss")  # losses ~ log(vocab)
    assert_close(ablated, totals[1] / n, rel=FP32, what="mean-ablated loss")
    x = torch.randn(50, 8)
    ev, _, _ = reconstruction_stats(Identity(), x)
    assert ev == pytest.approx(1.0)
