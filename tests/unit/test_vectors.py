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
    from dataclasses import replace

    assert ds.check(tiny) is ds
    assert ds.meta.fingerprint == tiny.fingerprint()
    ds.check(interp_model_named(tiny, "same/weights"))  # same weights under another name: fine
    legacy = replace(ds, meta=replace(ds.meta, fingerprint=""))  # a file from before fingerprints
    with pytest.raises(VectorMismatch, match=r"extracted from .* but is applied to"):
        legacy.check(interp_model_named(tiny, "someone/else"))
    legacy.check(interp_model_named(tiny, "someone/else"), allow_other_model=True)

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
    assert back.meta.method == "test" and back.meta.extra["imported_from"] == str(path)
    assert back.digest() == ds.at([1, 2, 3]).digest()


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


def test_digest_is_the_content_not_the_name(ds):
    from dataclasses import replace

    renamed = replace(ds, meta=replace(ds.meta, model="x", method="y", created="z", data_hash="w"))
    assert renamed.digest() == ds.digest()
    nudged = ds.vectors.clone()
    nudged[3, 7] += 1e-3
    assert replace(ds, vectors=nudged).digest() != ds.digest()
    assert ds.with_stats(resid_norm=torch.ones(4)).digest() != ds.digest()
    assert (
        ds.with_stats(resid_norm=torch.ones(4)).digest()
        != ds.with_stats(resid_norm=torch.full((4,), 2.0)).digest()
    )
    assert ds.at([0, 1]).digest() != ds.at([2, 3]).digest()  # layers
    other_site = replace(ds, meta=replace(ds.meta, site="resid_pre"))
    assert other_site.digest() != ds.digest()


def test_a_vector_meets_a_model_by_fingerprint_not_name(tmp_path):
    """A vector from ./m refuses another model later loaded from ./m, and fits a copy of it."""
    import shutil

    import interp
    from tests.tiny import write_tiny_model

    path = write_tiny_model(tmp_path / "m", seed=0)
    shutil.copytree(path, tmp_path / "copy")
    first = interp.load_model(str(path), device="cpu")
    ds = DirectionSet.from_tensor(torch.randn(4, 64), first)
    write_tiny_model(path, seed=1)  # new weights at the same path
    retrained = interp.load_model(str(path), device="cpu")
    assert retrained.name == first.name == ds.meta.model
    with pytest.raises(VectorMismatch, match="different weights"):
        ds.check(retrained)
    ds.check(retrained, allow_other_model=True)
    ds.check(interp.load_model(str(tmp_path / "copy"), device="cpu"))  # same weights elsewhere


def test_gguf_import_keeps_and_checks_the_source_model(ds, tiny, tiny_base, tmp_path):
    import gguf

    path = ds.at([1, 2, 3]).with_stats(resid_norm=torch.ones(3)).to_gguf(tmp_path / "v.gguf")
    with pytest.raises(VectorMismatch, match=r"v\.gguf: .*different weights"):
        DirectionSet.from_gguf(path, tiny_base)  # same shapes, another model
    moved = DirectionSet.from_gguf(path, tiny_base, allow_other_model=True)
    assert (moved.meta.model, moved.meta.fingerprint) == (tiny.name, tiny.fingerprint())
    assert torch.equal(moved.stats["resid_norm"], torch.ones(3))
    with pytest.raises(VectorMismatch, match="different weights"):
        moved.check(tiny_base)  # the recorded source survives the import
    from typer.testing import CliRunner

    from interp.cli.app import app

    args = ["vectors", "convert", str(path), str(tmp_path / "b.safetensors"), "-m", tiny_base.name]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "different weights" in refused.output, refused.output
    allowed = CliRunner().invoke(app, [*args, "--allow-other-model"])
    assert allowed.exit_code == 0, allowed.output
    assert DirectionSet.load(tmp_path / "b.safetensors").meta.fingerprint == tiny.fingerprint()

    def foreign(name, hint):  # what repeng writes: no interp metadata, the model type as hint
        writer = gguf.GGUFWriter(str(tmp_path / name), "controlvector")
        writer.add_string("controlvector.model_hint", hint)
        writer.add_uint32("controlvector.layer_count", 2)
        for layer in (1, 2):
            writer.add_tensor(f"direction.{layer}", ds[layer].numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return tmp_path / name

    with pytest.raises(VectorMismatch, match="model hint is 'mistral'"):
        DirectionSet.from_gguf(foreign("m.gguf", "mistral"), tiny)
    fits = DirectionSet.from_gguf(foreign("l.gguf", "llama"), tiny)
    assert fits.meta.fingerprint == tiny.fingerprint() and fits.meta.extra["model_hint"] == "llama"


def _bad_files(ds, tmp_path):
    """name -> (path, what the error must say) for files that are not direction sets."""
    import pickle

    import gguf

    good = ds.save(tmp_path / "good.safetensors").read_bytes()
    files = {}

    def put(name, data, says):
        (tmp_path / name).write_bytes(data)
        files[name] = (tmp_path / name, says)

    put("truncated.safetensors", good[: len(good) // 2], "not a readable safetensors file")
    put("random.safetensors", bytes(range(256)) * 3, "not a readable safetensors file")

    class Trap:  # unpickling this would create a file
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))

    put("pickle.safetensors", pickle.dumps({"v": Trap()}), "not a readable safetensors file")
    put("garbage.gguf", b"GGUF" + bytes(range(200)), "not a readable GGUF file")
    put("text.gguf", b"hello world\n" * 30, "not a readable GGUF file")
    uneven = gguf.GGUFWriter(str(tmp_path / "uneven.gguf"), "controlvector")
    uneven.add_tensor("direction.1", ds[1].numpy())
    uneven.add_tensor("direction.2", ds[2].numpy()[:32])
    uneven.write_header_to_file()
    uneven.write_kv_data_to_file()
    uneven.write_tensors_to_file()
    uneven.close()
    files["uneven.gguf"] = (tmp_path / "uneven.gguf", "different lengths")
    meta = {**ds.meta.to_dict(), "layers": list(ds.layers)}
    for name, broken, says in [
        ("nolayers", {k: v for k, v in meta.items() if k != "layers"}, "'layers' is None"),
        ("strlayers", {**meta, "layers": "0-3"}, "'layers' is '0-3'"),
        ("badn", {**meta, "n_layers": "many"}, "'n_layers' is 'many'"),
        ("badsite", {**meta, "site": "resid_side"}, "resid_side"),
    ]:
        path = save_tensors(tmp_path / f"{name}.safetensors", {"vectors": ds.vectors}, broken)
        files[f"{name}.safetensors"] = (path, says)
    from safetensors.torch import save_file

    save_file(
        {"vectors": ds.vectors}, tmp_path / "badjson.safetensors", metadata={"interp": "{oops"}
    )
    files["badjson.safetensors"] = (tmp_path / "badjson.safetensors", "not valid JSON")
    return files


def test_bad_vector_files_give_one_error_naming_the_file(ds, tiny, tmp_path):
    for name, (path, says) in _bad_files(ds, tmp_path).items():
        with pytest.raises(ValueError) as caught:
            if name.endswith(".gguf"):
                DirectionSet.from_gguf(path, tiny)
            else:
                DirectionSet.load(path)
        message = str(caught.value)
        assert name in message and says in message, (name, message)
    assert not (tmp_path / "PWNED").exists()  # the pickle was never unpickled


def test_the_cli_reports_bad_vector_files_in_one_line(ds, tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from interp.cli.app import app

    runner = CliRunner()
    for name, (path, says) in _bad_files(ds, tmp_path).items():
        if name.endswith(".gguf"):
            args = ["vectors", "convert", str(path), str(tmp_path / "o.safetensors")]
            args += ["-m", str(tiny_dir)]
        else:
            args = ["vectors", "info", str(path)]
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (name, result.output, result.exception)
        assert lines[-1].startswith("error: ") and name in lines[-1] and says in lines[-1], (
            name,
            result.output,
        )
        assert "Traceback" not in result.output
    assert not (tmp_path / "PWNED").exists()


def test_from_tensor_needs_one_row_and_one_stat_value_per_layer(tiny, monkeypatch):
    """Used to keep rows 0..k-1 for k layers (dropping the rest), cut stats to fit, and read
    layer 2.9 as block 2."""
    full = torch.arange(1.0, 5.0)[:, None].repeat(1, 64)  # row i is filled with i + 1
    with pytest.raises(ValueError, match=r"shape \(4, 64\) but layers \[2\] need \[1, d_model\]"):
        DirectionSet.from_tensor(full, tiny, layers=[2])
    with pytest.raises(ValueError, match=r"shape \(3, 64\) but all 4 blocks need \[4, d_model\]"):
        DirectionSet.from_tensor(full[:3], tiny)
    with pytest.raises(ValueError, match=r"stat 'resid_norm' has shape \(4,\) but layers \[1\]"):
        DirectionSet.from_tensor(full[:1], tiny, [1], stats={"resid_norm": torch.ones(4)})
    import jaxtyping

    monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)  # as users run it
    with pytest.raises(TypeError, match=r"whole block index \(int\), got 2.9 \(float\)"):
        DirectionSet.from_tensor(full[:2], tiny, layers=[2.9, 0.5])  # type: ignore[list-item]
    ds = DirectionSet.from_tensor(full[2:3], tiny, [2], stats={"resid_norm": torch.tensor([7.0])})
    assert ds.layers == (2,) and torch.equal(ds[2], full[2]) and ds.stat("resid_norm", 2) == 7.0


def test_files_from_before_the_fingerprint_change_still_fit_their_model(ds, tiny):
    """Vectors saved under the earlier fingerprint (config with dtype and transformers version,
    float32 samples; e.g. the committed CAA vectors) must not be refused as other weights."""
    import hashlib
    import json
    from dataclasses import replace

    digest = hashlib.sha256()  # the earlier definition, written out here
    config = tiny.hf.config.to_dict()
    config.pop("_name_or_path", None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(str(tiny.dtype).encode())
    for name, param in tiny.hf.named_parameters():
        flat = param.detach().reshape(-1)
        digest.update(name.encode())
        digest.update(flat[:: max(1, flat.numel() // 4096)].float().numpy().tobytes())
    earlier = digest.hexdigest()[:16]
    assert earlier != tiny.fingerprint()
    replace(ds, meta=replace(ds.meta, fingerprint=earlier)).check(tiny)
    with pytest.raises(VectorMismatch, match="different weights"):
        replace(ds, meta=replace(ds.meta, fingerprint="0123456789abcdef")).check(tiny)
