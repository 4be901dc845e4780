import pytest
import torch
from safetensors.torch import save_file

from interp.io import inside, load_tensors, read_jsonl, read_meta, save_tensors


def test_round_trip_with_metadata(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    path = save_tensors(tmp_path / "sub" / "x.safetensors", t, {"model": "m", "layers": [1, 2]})
    back, meta = load_tensors(path)
    assert torch.equal(back["a"], t["a"]) and torch.equal(back["b"], t["b"])
    assert meta == {"model": "m", "layers": [1, 2]} == read_meta(path)
    assert not list(tmp_path.rglob("*.tmp"))


def test_foreign_and_missing_files(tmp_path):
    save_file({"a": torch.zeros(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not written by interp"):
        load_tensors(tmp_path / "plain.safetensors")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_tensors(tmp_path / "none.safetensors")


def test_paths_stay_inside_the_chosen_directory(tmp_path):
    assert inside(tmp_path, "a", "b.txt") == (tmp_path / "a" / "b.txt").resolve()
    for bad in ("../x", "a/../../x", "/etc/passwd"):
        with pytest.raises(ValueError, match="would leave the output directory"):
            inside(tmp_path, bad)


def test_jsonl_errors_name_file_and_line(tmp_path):
    good = tmp_path / "g.jsonl"
    good.write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n')
    assert [r["prompt"] for r in read_jsonl(good)] == ["a", "b"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(ValueError, match=r"b\.jsonl:2: not valid JSON"):
        read_jsonl(bad)
    (tmp_path / "l.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_jsonl(tmp_path / "l.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="input is empty"):
        read_jsonl(tmp_path / "e.jsonl")


def test_non_utf8_jsonl_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"prompt": "a"}\n{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"latin\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 16\)"
    ):
        read_jsonl(path)


def test_output_paths_must_be_of_the_expected_kind(tmp_path):
    from interp.io import output_dir, output_file

    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    assert (
        output_file(tmp_path / "adir" / "new.safetensors") == tmp_path / "adir" / "new.safetensors"
    )
    assert output_dir(tmp_path / "adir") == tmp_path / "adir"
    assert output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(ValueError, match=r"--out .*adir is an existing directory; give a file"):
        output_file(tmp_path / "adir", "--out")
    with pytest.raises(ValueError, match=r"--out .*afile is an existing file; give a directory"):
        output_dir(tmp_path / "afile", "--out")
    with pytest.raises(ValueError, match=r"afile is a file, not a directory"):
        output_file(tmp_path / "afile" / "v.safetensors")
    with pytest.raises(ValueError, match=r"afile is a file, not a directory"):
        output_dir(tmp_path / "afile" / "sub")


def test_unreadable_safetensors_name_the_file(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match=r"junk\.safetensors is not a readable safetensors file"):
        read_meta(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match=r"is a directory; give a file"):
        load_tensors(tmp_path)
