"""The preference store: append-only, one label per query, survives a writer killed mid-line, refuses another
run's store, and loses nothing when several processes label at once."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from lrl.rlhf.store import PreferenceStore, StoreError


def _segments(i: int) -> dict[str, np.ndarray]:
    return {"obs0": np.full((3, 2), i, np.float32), "act0": np.zeros(3), "obs1": np.ones((3, 2)), "act1": np.ones(3)}


def test_queries_labels_roundtrip(tmp_path):
    store = PreferenceStore(tmp_path / "p", run="r1", env="CartPole-v1")
    assert store.add_query("q0", _segments(0))
    assert not store.add_query("q0", _segments(5))  # idempotent: a resumed run asks again
    np.testing.assert_array_equal(store.segments("q0")["obs0"], np.zeros((3, 2)))
    assert store.add_query("q1", _segments(1), clips=(lambda p: p.write_bytes(b"GIF0"), lambda p: p.write_bytes(b"G1")))
    assert [q["id"] for q in store.pending()] == ["q0", "q1"]
    assert store.queries()[1]["clips"] == ["clips/q1-0.gif", "clips/q1-1.gif"]
    assert (store.root / "clips" / "q1-0.gif").read_bytes() == b"GIF0"
    assert store.add_label("q1", "left", by="test")
    assert not store.add_label("q1", "right", by="other")  # one label per query: refused, not duplicated
    assert store.labels()["q1"]["label"] == "left"
    assert store.counts() == {"queries": 2, "labels": 1, "pending": 1}
    with pytest.raises(StoreError, match="no query"):
        store.add_label("nope", "left", by="x")
    with pytest.raises(StoreError, match="bad label"):
        store.add_label("q0", "maybe", by="x")
    with pytest.raises(StoreError, match="bad query id"):
        store.add_query("../etc", _segments(0))


def test_partial_line_is_ignored_and_other_run_refused(tmp_path):
    store = PreferenceStore(tmp_path, run="r1", env="E")
    store.add_query("a", _segments(0))
    store.add_label("a", "equal", by="x")
    with open(tmp_path / "labels.jsonl", "ab") as f:
        f.write(b'{"id":"a","label":"ri')  # a writer killed mid-line
    assert store.labels()["a"]["label"] == "equal"
    with pytest.raises(StoreError, match="of run 'r1', not of 'r2'"):
        PreferenceStore(tmp_path, run="r2", env="E")
    assert PreferenceStore.open(tmp_path).run == "r1"
    with pytest.raises(StoreError, match="not a preference store"):
        PreferenceStore.open(tmp_path / "missing")


def _label_all(root: str, who: str) -> int:
    store = PreferenceStore.open(root)
    return sum(store.add_label(q["id"], "left", by=who) for q in store.queries())


def test_concurrent_labellers_lose_and_duplicate_nothing(tmp_path):
    store = PreferenceStore(tmp_path, run="r", env="E")
    for i in range(40):
        store.add_query(f"q{i}", _segments(i))
    with mp.get_context("spawn").Pool(3) as pool:
        won = pool.starmap(_label_all, [(str(tmp_path), f"p{k}") for k in range(3)])
    assert sum(won) == 40  # every query labelled exactly once across the three writers
    lines = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 40 and len(store.labels()) == 40
