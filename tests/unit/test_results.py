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


def test_a_partial_last_line_is_skipped_by_readers_and_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RunStore(path)
    store.append({"i": 0}, {"v": 0})
    with path.open("a") as handle:
        handle.write('{"key": "abc", "config": {"i": 1}, "v"')  # killed mid-write
    store = RunStore(path)
    assert [r["config"]["i"] for r in store.records()] == [0]
    store.append({"i": 1}, {"v": 1})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["config"]["i"] for line in lines] == [0, 1]  # the stub is gone
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1 is not a JSON record"):
        RunStore(path)
    path.write_bytes(b'{"key": "a", "config": {}}\n\xff\xfe\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2 is not a JSON record"):
        load_frame(path)
    with pytest.raises(FileNotFoundError):
        load_frame(tmp_path / "none.jsonl")


def test_reading_never_modifies_the_store(tmp_path):
    """A partial last line is a unit being written: readers skip it and leave the bytes alone."""
    path = tmp_path / "r.jsonl"
    whole = {"key": unit_key({"i": 0}), "config": {"i": 0}, "v": 0}
    path.write_text(json.dumps(whole) + "\n" + '{"key": "k1", "config": {"i": 1}, "v": 1')
    before = path.read_bytes()
    frame = load_frame(path)
    store = RunStore(path)
    assert store.todo([{"i": 0}, {"i": 1}]) == [1] and not store.done(unit_key({"i": 1}))
    assert len(store.records()) == 1 and list(frame["v"]) == [0]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]  # readers make no lock file


WRITER = """
import json, sys, time
from pathlib import Path
from interp.runs.store import RunStore
path, first, last, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
store = RunStore(path)  # opened before the other writer has written anything
while not go.exists():
    time.sleep(0.005)
for i in range(first, last):
    store.append({"unit": i}, {"payload": "x" * 9000, "by": first})
    print(i, flush=True)
"""


def test_two_writer_processes_never_duplicate_or_corrupt_a_unit(tmp_path):
    path, go = tmp_path / "r.jsonl", tmp_path / "go"
    spans = [(0, 120), (60, 180)]  # units 60..119 are written by both
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(a), str(b), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a, b in spans
    ]
    time.sleep(2.0)  # both have imported and opened the store
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    data = path.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]  # every line whole
    units = [r["config"]["unit"] for r in records]
    assert sorted(units) == list(range(180))  # every unit once: none lost, none twice
    assert all(r["payload"] == "x" * 9000 and r["key"] == unit_key(r["config"]) for r in records)


READ_DURING_WRITE = """
import json, os, sys, time
from pathlib import Path
from filelock import FileLock
path, half, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
line = json.dumps({"key": "k-slow", "config": {"i": 1}, "v": "y" * 500}) + "\\n"
with FileLock(str(path) + ".lock"), path.open("ab") as handle:  # what a writer holds
    handle.write(line[:200].encode()); handle.flush()
    half.touch()
    while not go.exists():
        time.sleep(0.005)
    handle.write(line[200:].encode()); handle.flush(); os.fsync(handle.fileno())
"""


def test_a_reader_while_another_process_writes_never_breaks_its_record(tmp_path):
    path, half, go = tmp_path / "r.jsonl", tmp_path / "half", tmp_path / "go"
    RunStore(path).append({"i": 0}, {"v": "first"})
    writer = subprocess.Popen(
        [sys.executable, "-c", READ_DURING_WRITE, str(path), str(half), str(go)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not half.exists() and time.time() < deadline:
        time.sleep(0.005)
    assert half.exists(), "the writer did not start"
    during = path.read_bytes()
    store = RunStore(path)  # open, look up and read while the line is half written
    assert len(load_frame(path)) == 1 and store.todo([{"i": 0}]) == []
    assert path.read_bytes() == during
    go.touch()
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["key"] for r in records[1:]] == ["k-slow"] and records[1]["v"] == "y" * 500
    assert store.done("k-slow")  # a store opened earlier sees units others appended since


KILLED_WRITER = """
import sys
from interp.runs.store import RunStore
store = RunStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    key = store.append({"unit": i}, {"payload": "z" * 20000})
    print(i, flush=True)
"""


@pytest.mark.slow
def test_kill_9_of_a_writer_loses_at_most_the_unit_in_flight(tmp_path):
    path, n = tmp_path / "r.jsonl", 400
    for attempt in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(path), str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        acknowledged = []
        for line in proc.stdout:  # kill once a few more units have landed
            acknowledged.append(int(line))
            if len(acknowledged) >= 5 + 7 * attempt:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        units = {r["config"]["unit"] for r in RunStore(path).records()}
        assert set(acknowledged) <= units  # whatever a writer reported done is on disk
        assert len(units) < n, "the writer finished before it was killed"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), str(n)], check=True)
    lines = path.read_bytes().decode().splitlines()
    assert sorted(json.loads(line)["config"]["unit"] for line in lines) == list(range(n))


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


# -- sweeps: keys cover everything that produced a unit --------------------------------------


def _vector(tiny, seed, created="2026-01-01T00:00:00+00:00"):
    """A random set with default metadata and a fixed creation time (as if made in one second)."""
    from dataclasses import replace

    import torch

    from interp.vectors import DirectionSet

    g = torch.Generator().manual_seed(seed)
    ds = DirectionSet.from_tensor(torch.randn(4, 64, generator=g) * 8, tiny)
    return replace(ds, meta=replace(ds.meta, created=created))


def _sweep(tiny, ds, store, batch_size=2, **kw):
    from interp.runs.sweeps import grid, run_sweep

    cells = grid(["Tell me about the ocean"], ds, [1], [0.0, 6.0])
    return run_sweep(
        tiny, cells, store, max_new_tokens=6, batch_size=batch_size, progress=False, **kw
    )


def test_run_sweep_refuses_a_batch_size_below_one(tiny, tmp_path):
    ds = _vector(tiny, 0)
    for bad in (-1, 0):
        with pytest.raises(ValueError, match=rf"batch_size must be an integer >= 1, got {bad}"):
            _sweep(tiny, ds, tmp_path / "r.jsonl", batch_size=bad)
    assert not (tmp_path / "r.jsonl").exists()


def test_two_vectors_with_the_same_metadata_never_share_results(tiny, tmp_path):
    first, second = _vector(tiny, 0), _vector(tiny, 1)
    assert first.meta == second.meta  # same name, method, data hash and creation second
    store = _sweep(tiny, first, tmp_path / "r.jsonl")
    _sweep(tiny, second, store)
    alone = _sweep(tiny, second, tmp_path / "alone.jsonl").records()
    steered = [r for r in store.records() if r["config"]["coef"] == 6.0]
    assert len(store.records()) == 4 and len(steered) == 2  # the second vector was computed
    mine = [
        r for r in steered if r["config"]["interventions"][0]["vector"] == second.digest_at([1])
    ]
    theirs = [r for r in alone if r["config"]["coef"] == 6.0]
    assert [r["text"] for r in mine] == [r["text"] for r in theirs]  # its own generations


def test_the_same_vector_resaved_reuses_its_results(tiny, tmp_path):
    from dataclasses import replace

    ds = _vector(tiny, 0)
    store = _sweep(tiny, ds, tmp_path / "r.jsonl")
    renamed = replace(ds, meta=replace(ds.meta, created="2027-05-05", method="renamed"))
    back = type(ds).load(renamed.save(tmp_path / "v.safetensors"))
    before = store.path.read_bytes()
    _sweep(tiny, back, store)
    assert store.path.read_bytes() == before  # nothing recomputed: same content, same keys


def test_decoding_and_scorer_are_part_of_the_key(tiny, tmp_path):
    from interp.runs.sweeps import Scorer

    ds = _vector(tiny, 0)
    store = _sweep(tiny, ds, tmp_path / "r.jsonl")
    _sweep(tiny, ds, store, temperature=0.7)
    calls = []

    def score(configs, generations):
        calls.append(len(configs))
        return [{"chars": len(g.text)} for g in generations]

    _sweep(tiny, ds, store, scorer=Scorer({"name": "chars"}, score))
    records = store.records()
    assert len(records) == 6 and calls == [2]  # each setting computed its own units
    scored = [r for r in records if r["config"]["scorer"] == {"name": "chars"}]
    plain = [
        r for r in records if r["config"]["scorer"] is None and r["config"]["temperature"] == 0
    ]
    assert [r["chars"] for r in scored] == [len(r["text"]) for r in scored]
    assert [r["text"] for r in scored] == [r["text"] for r in plain]  # same text under any scorer
    assert {r["config"]["fingerprint"] for r in records} == {tiny.fingerprint()}
    assert all("model" not in r["config"] and r["model"] == tiny.name for r in records)


def test_stop_strings_are_part_of_the_key_only_when_there_are_any(tiny, tmp_path):
    ds = _vector(tiny, 0)
    store = _sweep(tiny, ds, tmp_path / "r.jsonl")  # a chat model: no stop strings
    keys = {r["key"] for r in store.records()}
    assert all("stop" not in r["config"] for r in store.records())
    _sweep(tiny, ds, store, stop=())  # the same as no stop strings: nothing new
    assert {r["key"] for r in store.records()} == keys
    _sweep(tiny, ds, store, stop=["\n\n"])
    stopped = [r for r in store.records() if r["key"] not in keys]
    assert len(stopped) == 2 and all(r["config"]["stop"] == ["\n\n"] for r in stopped)


def test_ab_sweep_keys_the_vector_by_its_values_not_its_data_hash(tiny, tmp_path):
    from interp import caa

    items = [
        caa.ABItem("Is the ocean deep?\n(A) Yes\n(B) No", "(A)", "(B)"),
        caa.ABItem("Is Paris in Spain?\n(A) Yes\n(B) No", "(B)", "(A)"),
    ]
    first, second = _vector(tiny, 0), _vector(tiny, 1)
    assert first.meta.data_hash == second.meta.data_hash  # same (empty) source data
    store = caa.ab_sweep(tiny, items, first, [1], [0.0, 8.0], tmp_path / "ab.jsonl")
    caa.ab_sweep(tiny, items, second, [1], [0.0, 8.0], store)
    alone = caa.ab_sweep(tiny, items, second, [1], [0.0, 8.0], tmp_path / "alone.jsonl")
    records = store.records()
    assert len(records) == 8  # the second vector's cells were computed, not taken as done
    mine = [r["p_match"] for r in records if r["config"]["vector"] == second.digest_at([1])]
    assert mine == [r["p_match"] for r in alone.records()]
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got -1"):
        caa.ab_sweep(tiny, items, first, [1], [0.0], store, batch_size=-1)


def test_a_bfloat16_run_keys_its_own_units(tiny, tiny_dir, tmp_path):
    """One fingerprint for fp32 and bf16 (same weights), but the dtype is in every unit's key:
    a bf16 sweep never reuses fp32 texts, and its texts are the bf16 model's own."""
    import interp
    from interp.steering.generation import generate

    ds = _vector(tiny, 0)
    store = _sweep(tiny, ds, tmp_path / "r.jsonl")
    bf16 = interp.load_model(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert bf16.fingerprint() == tiny.fingerprint()
    _sweep(bf16, ds, store)
    records = store.records()
    assert len(records) == 4  # the bf16 units were computed, not taken as done
    assert {r["config"]["dtype"] for r in records} == {"float32", "bfloat16"}
    mine = [r for r in records if r["config"]["dtype"] == "bfloat16"]
    unsteered = next(r["text"] for r in mine if r["config"]["coef"] == 0)
    assert unsteered == generate(bf16, ["Tell me about the ocean"], max_new_tokens=6)[0].text


def test_another_chat_template_computes_its_own_units(tiny, tiny_dir, tmp_path):
    """Same weights, another chat template: the prompt's token ids differ, and so do the keys
    (they used to hold only the raw messages, so the second model reused the first's texts)."""
    import shutil

    import interp
    from interp import caa
    from interp.batching import encode_all
    from interp.runs.sweeps import grid, run_sweep
    from interp.steering.generation import generate

    other_dir = tmp_path / "template"
    shutil.copytree(tiny_dir, other_dir)
    other = interp.load_model(str(tiny_dir), device="cpu")
    other.tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    other.tokenizer.save_pretrained(other_dir)
    other = interp.load_model(str(other_dir), device="cpu")
    chat = [{"role": "user", "content": "Tell me about the ocean"}]
    assert other.fingerprint() == tiny.fingerprint()
    assert encode_all(other, [chat])[0].ids != encode_all(tiny, [chat])[0].ids

    ds = _vector(tiny, 0)
    store = tmp_path / "r.jsonl"
    run_sweep(tiny, grid([chat], ds, [1], [0.0]), store, max_new_tokens=6, progress=False)
    run_sweep(other, grid([chat], ds, [1], [0.0]), store, max_new_tokens=6, progress=False)
    records = RunStore(store).records()
    assert len(records) == 2  # the second template's unit was computed
    assert records[1]["text"] == generate(other, [chat], max_new_tokens=6)[0].text
    assert records[0]["text"] == generate(tiny, [chat], max_new_tokens=6)[0].text

    items = [caa.ABItem("Is the ocean deep?\n(A) Yes\n(B) No", "(A)", "(B)")]
    ab = caa.ab_sweep(tiny, items, ds, [1], [0.0], tmp_path / "ab.jsonl")
    caa.ab_sweep(other, items, ds, [1], [0.0], ab)
    assert len(ab.records()) == 2


def test_numbers_are_keyed_by_value(tiny, tmp_path):
    """[0, 2] and [0.0, 2.0] (or -0.0) are one set of units (they used to be two)."""
    from interp import caa
    from interp.runs.sweeps import grid, run_sweep

    assert unit_key({"c": 4}) == unit_key({"c": 4.0}) != unit_key({"c": 4.5})
    assert unit_key({"c": [0.0, {"t": 1.0}]}) == unit_key({"c": [-0.0, {"t": 1}]})
    assert unit_key({"temperature": 0, "top_p": 1}) == unit_key({"temperature": 0.0, "top_p": 1.0})
    assert unit_key({"c": True}) != unit_key({"c": 1})
    assert unit_key({"c": "4"}) != unit_key({"c": 4})
    ds = _vector(tiny, 0)
    prompts = ["Tell me about the ocean", "Hi"]
    store = tmp_path / "r.jsonl"
    run_sweep(tiny, grid(prompts, ds, [1], [0, 2]), store, max_new_tokens=4, progress=False)
    before = store.read_bytes()
    run_sweep(tiny, grid(prompts, ds, [1], [0.0, 2.0]), store, max_new_tokens=4, progress=False)
    run_sweep(tiny, grid(prompts, ds, [1], [-0.0, 2]), store, max_new_tokens=4, progress=False)
    assert store.read_bytes() == before and len(RunStore(store).records()) == 4
    items = [caa.ABItem("Is the ocean deep?\n(A) Yes\n(B) No", "(A)", "(B)")]
    ab = caa.ab_sweep(tiny, items, ds, [1], [0, 8], tmp_path / "ab.jsonl")
    caa.ab_sweep(tiny, items, ds, [1], [-0.0, 8.0], ab)
    assert len(ab.records()) == 2


def test_another_scorer_reuses_the_stored_generations(tiny, tmp_path, monkeypatch):
    """Changing the metric used to regenerate every text: now only the scorer runs."""
    import interp.runs.sweeps as sweeps
    from interp.runs.sweeps import Scorer

    generated = []
    real = sweeps.generate

    def counting(model, prompts, *args, **kwargs):
        generated.extend(prompts)
        return real(model, prompts, *args, **kwargs)

    monkeypatch.setattr(sweeps, "generate", counting)
    scored = {"a": 0, "b": 0}

    def scorer(name):
        def score(configs, generations):
            scored[name] += len(configs)
            return [{name: len(g.tokens)} for g in generations]

        return Scorer({"name": name}, score)

    ds = _vector(tiny, 0)
    store = tmp_path / "r.jsonl"
    _sweep(tiny, ds, store, scorer=scorer("a"))
    assert len(generated) == 2
    _sweep(tiny, ds, store, scorer=scorer("b"))
    _sweep(tiny, ds, store)
    assert len(generated) == 2 and scored == {"a": 2, "b": 2}  # generated once, scored twice
    records = RunStore(store).records()
    assert len(records) == 6
    by_scorer: dict[str, list[dict]] = {}
    for r in records:
        by_scorer.setdefault(json.dumps(r["config"]["scorer"]), []).append(r)
    texts = [[(r["text"], r["tokens"]) for r in rs] for rs in by_scorer.values()]
    assert texts[0] == texts[1] == texts[2]  # the same generations under every scorer
    assert [r["b"] for r in by_scorer['{"name": "b"}']] == [len(t) for _, t in texts[0]]
    assert len({r["gen_key"] for r in records}) == 2


def test_a_sub_set_or_an_added_stat_keeps_the_keys(tiny, tmp_path):
    """An intervention is keyed by the rows it applies: `ds.at(...)` or `ds` with a resid_norm
    stat added (interp vectors resid-norm) used to re-key every raw-scale result."""
    import torch

    from interp.steering import interventions as iv

    ds = _vector(tiny, 0)
    store = _sweep(tiny, ds, tmp_path / "r.jsonl")
    before = store.path.read_bytes()
    _sweep(tiny, ds.at([1, 2, 3]), store)
    _sweep(tiny, ds.with_stats(resid_norm=torch.arange(1.0, 5.0)), store)
    assert store.path.read_bytes() == before
    changed = ds.vectors.clone()
    changed[2] += 1.0  # another row than the steered layer 1: still the same units
    _sweep(tiny, type(ds)(changed, ds.layers, ds.meta), store)
    assert store.path.read_bytes() == before
    changed[1] += 1.0  # the steered row: new units
    _sweep(tiny, type(ds)(changed, ds.layers, ds.meta), store)
    assert len(store.records()) == 4

    norms = ds.with_stats(resid_norm=torch.arange(1.0, 5.0))
    other = norms.with_stats(resid_norm=torch.tensor([1.0, 2.0, 9.0, 4.0]))  # differs at layer 2
    key = iv.add(norms, 1, 0.5, scale="resid_norm").describe()
    assert key == iv.add(other, 1, 0.5, scale="resid_norm").describe()  # same stat at layer 1
    assert (
        iv.add(norms, 2, 0.5, scale="resid_norm").describe()
        != iv.add(other, 2, 0.5, scale="resid_norm").describe()
    )
    assert iv.add(ds, 1, 0.5).describe() == iv.add(ds.at([1]), 1, 0.5).describe()
