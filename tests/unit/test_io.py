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
