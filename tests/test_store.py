"""The state store: keys, reuse, corruption, interrupts and concurrent builds."""

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from orderstudy.core.params import StudyParams
from orderstudy.study.store import StateStore


def _params(**overrides) -> StudyParams:
    raw = {"study": "t", "model": {"source": "some/model"}}
    for section, values in overrides.items():
        raw[section] = values
    return StudyParams.model_validate(raw)


def _store(root, params=None, data_hash="d1"):
    return StateStore(root, params or _params(), "float32", "cpu",
                      lambda op: {"training_data": data_hash} if op == "F" else {})


def test_changing_one_operation_parameter_changes_exactly_the_states_after_it(tmp_path):
    states = ["base", "F", "P", "Q", "P>F", "Q>P", "F>Q", "F>P>Q", "Q>F>P"]
    before = {s: _store(tmp_path).key(s) for s in states}
    after = {s: _store(tmp_path, _params(prune={"sparsity": 0.45})).key(s) for s in states}
    changed = {s for s in states if before[s] != after[s]}
    assert changed == {"P", "P>F", "Q>P", "F>P>Q", "Q>F>P"}
    new_data = {s: _store(tmp_path, data_hash="d2").key(s) for s in states}
    assert {s for s in states if before[s] != new_data[s]} == {"F", "P>F", "F>Q", "F>P>Q", "Q>F>P"}
    assert len(set(before.values())) == len(states)


def _fake_build(counter: Path, sleep_s: float = 0.0):
    def build(name, out_dir, parent_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text('{"model_type": "llama"}')
        save_file({"w": torch.randn(16, 16)}, out_dir / "model.safetensors")
        time.sleep(sleep_s)
        with open(counter, "a") as f:
            f.write(name + "\n")
        return {"parameters": 1}
    return build


def test_a_state_is_built_once_then_reused_with_its_parents(tmp_path):
    counter = tmp_path / "built.txt"
    store = _store(tmp_path / "states")
    state, reused = store.get("F>P", _fake_build(counter))
    assert not reused and counter.read_text().split() == ["base", "F", "F>P"]
    record = state.record()
    assert record["size_bytes"] == sum(m["bytes"] for m in record["manifest"].values())
    assert record["parent"] == store.key("F")
    state, reused = store.get("F>P", _fake_build(counter))
    assert reused and counter.read_text().split() == ["base", "F", "F>P"]


def test_a_corrupted_state_is_discarded_and_rebuilt(tmp_path):
    counter = tmp_path / "built.txt"
    store = _store(tmp_path / "states")
    state, _ = store.get("Q", _fake_build(counter))
    weights = state.model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes in a weight: only the hash check can see it
    weights.write_bytes(bytes(data))
    events = []
    state, reused = store.get("Q", _fake_build(counter), lambda kind, s, r: events.append((kind, s.name)))
    assert not reused and ("discarded", "Q") in events
    assert counter.read_text().split() == ["base", "Q", "Q"]


def test_an_interrupted_build_leaves_nothing_behind(tmp_path):
    store = _store(tmp_path / "states")
    counter = tmp_path / "built.txt"
    store.get("base", _fake_build(counter))

    def interrupted(name, out_dir, parent_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.get("P", interrupted)
    leftovers = [p.name for p in (tmp_path / "states").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == [store.key("base")]
    _, reused = store.get("P", _fake_build(counter))
    assert not reused


def _concurrent_get(root, counter):
    _store(Path(root)).get("P", _fake_build(Path(counter), sleep_s=1.0))


def test_two_processes_wanting_the_same_state_build_it_once(tmp_path):
    counter = tmp_path / "built.txt"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_concurrent_get, args=(str(tmp_path / "states"), str(counter))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(counter.read_text().split()) == ["P", "base"]


ALL_STATES = ["base", "F", "P", "Q", "P>F", "P>Q", "Q>F", "Q>P", "F>P", "F>Q",
              "F>P>Q", "F>Q>P", "P>F>Q", "Q>F>P", "Q>P>F", "P>Q>F"]


def _seeded_store(root, seed, **sections):
    return StateStore(root, _params(seeds=[0, 1, 2], **sections), "float32", "cpu",
                      lambda op: {"training_data": "d1"} if op == "F" else {}, seed)


def test_the_seed_is_in_a_key_only_where_a_stochastic_step_decided_the_state(tmp_path):
    keys = {seed: {s: _seeded_store(tmp_path, seed).key(s) for s in ALL_STATES} for seed in (0, 1, 2)}
    shared = {s for s in ALL_STATES if len({keys[seed][s] for seed in keys}) == 1}
    # Magnitude pruning and quantization draw nothing at random: base, P, Q, P>Q, Q>P are one state for every seed.
    assert shared == {"base", "P", "Q", "P>Q", "Q>P"}
    # Everything after a fine-tune is a state of its seed: 11 states, three times.
    assert len({keys[seed][s] for seed in keys for s in ALL_STATES}) == 5 + 3 * 11
    store = _seeded_store(tmp_path, 1)
    assert store.label("P>Q") == "P>Q" and store.label("Q>F>P") == "Q>F>P.seed1"
    assert store.build_seed("P>Q") == 0 and store.build_seed("Q>F>P") == 1


def test_pruning_that_samples_calibration_data_is_a_state_of_its_seed(tmp_path):
    calibrated = {"method": "wanda"}
    keys = {seed: {s: _seeded_store(tmp_path, seed, prune=calibrated).key(s) for s in ALL_STATES} for seed in (0, 1)}
    assert {s for s in ALL_STATES if keys[0][s] == keys[1][s]} == {"base", "Q"}


def test_adding_a_seed_keeps_every_key_of_the_seeds_already_there(tmp_path):
    one = StateStore(tmp_path, _params(seeds=[0]), "float32", "cpu", lambda op: {"training_data": "d1"} if op == "F" else {})
    three = _seeded_store(tmp_path, 0)
    assert all(one.key(s) == three.key(s) for s in ALL_STATES)
