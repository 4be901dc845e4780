import json
import os
import signal
import subprocess
import sys
import time

import pytest

from interp.runs.store import RunStore, load_frame, unit_key


def test_keys_todo_and_append(tmp_path):
    store = RunStore(tmp_path / "r.jsonl")
    configs = [{"coef": c, "layer": 1} for c in (0, 1, 2)] + [
        {"layer": 1, "coef": 0}
    ]  # last = first
    assert unit_key({"a": 1, "b": 2}) == unit_key({"b": 2, "a": 1})
    assert store.todo(configs) == [0, 1, 2]  # the last config repeats the first
    store.append(configs[0], {"text": "x"})
    store.append(configs[0], {"text": "again"})  # already recorded: not written twice
    again = RunStore(tmp_path / "r.jsonl")
    assert again.todo(configs) == [1, 2]
    frame = again.frame()
    assert list(frame["text"]) == ["x"] and list(frame["config.coef"]) == [0]


def test_a_partial_last_line_is_dropped(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RunStore(path)
    store.append({"i": 0}, {"v": 0})
    with path.open("a") as handle:
        handle.write('{"key": "abc", "config": {"i": 1}, "v"')  # killed mid-write
    store = RunStore(path)
    assert [r["config"]["i"] for r in store.records()] == [0]
    store.append({"i": 1}, {"v": 1})
    assert [r["config"]["i"] for r in RunStore(path).records()] == [0, 1]
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1 is not a JSON record"):
        RunStore(path)
    with pytest.raises(FileNotFoundError):
        load_frame(tmp_path / "none.jsonl")


def steer_command(tiny_dir, vector, prompts, out, coefs):
    args = [
        sys.executable,
        "-m",
        "interp.cli.app",
        "steer",
        str(prompts),
        "-v",
        str(vector),
        "-o",
        str(out),
        "-m",
        str(tiny_dir),
        "--layers",
        "1,2",
        "--max-new-tokens",
        "24",
        "--batch-size",
        "2",
        "--metric",
        "length",
    ]
    for c in coefs:
        args += ["--coef", str(c)]
    return args


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_loss_or_duplicates(tiny, tiny_dir, tmp_path):
    """Run `interp steer`, kill -9 it once results start to land, run it again, compare."""
    import torch

    from interp.vectors import DirectionSet

    vector = DirectionSet.from_tensor(torch.randn(4, 64) * 3, tiny).save(tmp_path / "v.safetensors")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": p}) for p in ["Tell me about the ocean", "Hi", "Why did"])
    )
    coefs = [-6, -3, 0, 3, 6]
    n_units = 3 * 2 * len(coefs)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        steer_command(tiny_dir, vector, prompts, killed, coefs),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = killed / "generations.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 4):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = results.read_text().count("\n")
    assert 4 <= partial < n_units, "the run was not interrupted part-way"

    subprocess.run(
        steer_command(tiny_dir, vector, prompts, killed, coefs),
        env=env,
        check=True,
        capture_output=True,
    )
    clean = tmp_path / "clean"
    subprocess.run(
        steer_command(tiny_dir, vector, prompts, clean, coefs),
        env=env,
        check=True,
        capture_output=True,
    )

    resumed = RunStore(results).records()
    reference = RunStore(clean / "generations.jsonl").records()
    keys = [r["key"] for r in resumed]
    assert len(keys) == len(set(keys)) == n_units  # nothing lost, nothing twice
    by_key = {r["key"]: r["text"] for r in reference}
    assert {r["key"]: r["text"] for r in resumed} == by_key  # and identical to an uninterrupted run
    assert (killed / "steer_length.html").exists()
