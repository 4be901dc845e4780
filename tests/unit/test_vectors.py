import gguf
import pytest
import torch

from interp.io import save_tensors
from interp.vectors import DirectionSet, VectorMismatch


@pytest.fixture()
def ds(tiny):
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(tiny.n_layers, tiny.d_model, generator=g)
    return DirectionSet.from_tensor(vecs, tiny, method="test", data=["a", "b"], note="x")


def test_metadata_and_round_trip(ds, tiny, tmp_path):
    assert ds.layers == (0, 1, 2, 3) and ds.vectors.shape == (4, 64)
    meta = ds.meta
    assert (meta.model, meta.site, meta.layer_convention, meta.method) == (
        tiny.name,
        "resid_post",
        "transformer_lens_block",
        "test",
    )
    assert meta.data_hash and meta.created and meta.extra == {"note": "x"}
    ds = ds.with_stats(resid_norm=torch.arange(4.0))
    back = DirectionSet.load(ds.save(tmp_path / "v.safetensors"))
    assert torch.equal(back.vectors, ds.vectors) and back.layers == ds.layers
    assert back.meta == ds.meta and torch.equal(back.stats["resid_norm"], torch.arange(4.0))


def test_arithmetic(ds):
    other = ds * 2.0
    assert torch.allclose((ds + other).vectors, 3 * ds.vectors)
    assert torch.allclose((other - ds).vectors, ds.vectors)
    assert torch.allclose((-ds).vectors, -ds.vectors)
    assert torch.allclose(ds.normalize().norms(), torch.ones(4))
    assert torch.allclose(ds.cosine(other), torch.ones(4))
    ortho = ds.orthogonalize(ds.at([0, 1, 2, 3]) * -3.0)
    assert torch.allclose(ortho.vectors, torch.zeros(4, 64), atol=1e-5)
    sub = ds.at([1, 3])
    assert sub.layers == (1, 3) and torch.equal(sub[3], ds[3])
    with pytest.raises(ValueError, match="do not align"):
        ds + sub
    with pytest.raises(KeyError, match=r"covers layers \[1, 3\]"):
        sub[0]
    assert "scale[2]" in other.meta.method


def test_checks_against_the_model(ds, tiny):
    assert ds.check(tiny) is ds
    with pytest.raises(VectorMismatch, match=r"extracted from .* but is applied to"):
        ds.check(interp_model_named(tiny, "someone/else"))
    ds.check(interp_model_named(tiny, "someone/else"), allow_other_model=True)
    from dataclasses import replace

    with pytest.raises(VectorMismatch, match="layers"):
        replace(ds, meta=replace(ds.meta, n_layers=30)).check(tiny)
    bad = torch.randn(4, 32)
    with pytest.raises(ValueError, match="metadata says 64"):
        DirectionSet(bad, (0, 1, 2, 3), ds.meta)
    with pytest.raises(VectorMismatch, match="d_model 32"):
        DirectionSet(bad, (0, 1, 2, 3), replace(ds.meta, d_model=32)).check(tiny)


def interp_model_named(model, name):
    from dataclasses import replace

    return replace(model, name=name)


def test_nan_and_malformed_files_are_refused(ds, tiny, tmp_path):
    nan = ds.vectors.clone()
    nan[2, 5] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf values \(rows \[2\]\)"):
        DirectionSet.from_tensor(nan, tiny)
    path = save_tensors(
        tmp_path / "nan.safetensors",
        {"vectors": nan},
        {**ds.meta.to_dict(), "layers": [0, 1, 2, 3]},
    )
    with pytest.raises(ValueError, match="NaN or inf"):
        DirectionSet.load(path)
    other = save_tensors(tmp_path / "cap.safetensors", {"x": torch.zeros(1)}, {"layers": [1]})
    with pytest.raises(ValueError, match="not an interp direction set"):
        DirectionSet.load(other)
    with pytest.raises(ValueError, match="GGUF file"):
        DirectionSet.load(tmp_path / "v.gguf")


def test_llama_cpp_control_vector_round_trip(ds, tiny, tmp_path):
    with pytest.raises(ValueError, match="cannot steer block 0"):
        ds.to_gguf(tmp_path / "v.gguf")
    path = ds.at([1, 2, 3]).to_gguf(tmp_path / "v.gguf", model_hint="llama")
    # what llama.cpp's loader requires: 1-D float32 tensors direction.N with N >= 1
    reader = gguf.GGUFReader(str(path))
    names = {t.name: t for t in reader.tensors}
    assert sorted(names) == ["direction.1", "direction.2", "direction.3"]
    assert all(
        t.tensor_type == gguf.GGMLQuantizationType.F32 and len(t.shape) == 1 for t in names.values()
    )
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "controlvector"
    back = DirectionSet.from_gguf(path, tiny)
    assert back.layers == (1, 2, 3)
    assert torch.equal(back.vectors, ds.at([1, 2, 3]).vectors)
    assert back.meta.extra["original_meta"]["method"] == "test"


def test_from_tensor_keeps_each_row_with_its_layer(tiny):
    vecs = torch.stack([torch.full((64,), float(i)) for i in (3, 1, 2)])
    ds = DirectionSet.from_tensor(
        vecs, tiny, [3, 1, -2], stats={"s": torch.tensor([30.0, 10.0, 20.0])}
    )
    assert ds.layers == (1, 2, 3)
    assert [float(ds[layer][0]) for layer in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert [ds.stat("s", layer) for layer in (1, 2, 3)] == [10.0, 20.0, 30.0]
    with pytest.raises(ValueError, match="repeat a block"):
        DirectionSet.from_tensor(vecs, tiny, [1, 1, 2])
    with pytest.raises(ValueError, match="out of range"):
        DirectionSet.from_tensor(vecs[:1], tiny, [7])
