"""The preference store: the queries a run asks and the labels people (or the synthetic annotator) give, on disk in
the run directory, shared by the training run and any number of labelling pages (docs/rlhf.md).

Layout of ``RUN_DIR/preferences/``::

    store.json       {"format": 1, "run": RUN_ID, "env": ENV_ID}: whose store this is
    queries.jsonl    one line per query: {"id", "round", "created", "clips": [LEFT, RIGHT] or null}
    labels.jsonl     one line per label:  {"id", "label", "by", "time"}
    segments/ID.npz  the two segments' observations and actions (what the reward model learns from)
    clips/ID-0.gif, clips/ID-1.gif   the rendered segments, when the run renders them for people
    .lock            an flock that serialises every writer (the run and each page)

Both ``.jsonl`` files are append-only. A query line is written only after its segment (and clip) files are in
place (each written to a temporary name and renamed), so a reader never sees a query it cannot show. A label is
appended under the lock, flushed and fsynced before :meth:`PreferenceStore.add_label` returns: a label that was
acknowledged survives ``kill -9`` of any process. A query gets one label: the second answer to the same query (two
people on one pair) is refused, not duplicated. A line cut short by a kill is ignored when reading.

Labels are ``left`` (μ = (1, 0)), ``right`` (μ = (0, 1)), ``equal`` (μ = (½, ½)) and ``skip`` ("can't tell": the
pair is not comparable and is discarded, Rossi eq. 14.4).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lrl.errors import LrlError

FORMAT = 1
LABELS = ("left", "right", "equal", "skip")
MU = {"left": (1.0, 0.0), "right": (0.0, 1.0), "equal": (0.5, 0.5)}  # "skip" has none: discarded
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class StoreError(LrlError):
    """The store cannot be used as asked (another run's store, an unknown query, a bad label). Exit code 2."""

    exit_code = 2


def valid_id(query_id: object) -> bool:
    """Query ids are short and made of ``[A-Za-z0-9._-]`` (they name files; labels arrive over the network)."""
    return (isinstance(query_id, str) and 0 < len(query_id) <= 64 and set(query_id) <= _ID_CHARS
            and not query_id.startswith("."))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a last line without its newline (a writer killed mid-write) is not a record."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n")[:-1]:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PreferenceStore:
    """``RUN_DIR/preferences``. ``run`` is the owning run's id: opening another run's store is refused."""

    def __init__(self, root: Path | str, run: str, env: str, create: bool = True) -> None:
        self.root = Path(root)
        meta_path = self.root / "store.json"
        if not meta_path.exists():
            if not create:
                raise StoreError(f"{self.root} is not a preference store (no store.json); "
                                 "start the run with an rlhf section first")
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "segments").mkdir(exist_ok=True)
            (self.root / "clips").mkdir(exist_ok=True)
            with self._locked():
                if not meta_path.exists():
                    _write_atomic(meta_path, lambda p: p.write_text(
                        json.dumps({"format": FORMAT, "run": run, "env": env}) + "\n"))
        self.meta = self.read_meta(self.root)
        if self.meta.get("run") != run:
            raise StoreError(f"{self.root} is the preference store of run {self.meta.get('run')!r}, not of "
                             f"{run!r}; point rlhf at this run's own directory or start a new run")
        self.run, self.env = run, env

    @staticmethod
    def read_meta(root: Path | str) -> dict[str, Any]:
        path = Path(root) / "store.json"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"{root} is not a preference store (no store.json)") from None
        except ValueError:
            raise StoreError(f"{path} is not valid JSON; the store is damaged") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{path}: unknown store format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        return meta

    @classmethod
    def open(cls, root: Path | str) -> PreferenceStore:
        """An existing store, whoever owns it (the labelling page)."""
        meta = cls.read_meta(root)
        return cls(root, str(meta.get("run")), str(meta.get("env")), create=False)

    # --- locking -------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.root / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- queries -------------------------------------------------------------------------------------------------
    def add_query(self, query_id: str, segments: dict[str, np.ndarray], round: int = 0,
                  clips: tuple[Any, Any] | None = None) -> bool:
        """Add a query: ``segments`` are the arrays the reward model learns from (e.g. ``obs0, act0, obs1, act1``),
        ``clips`` two rendered GIF writers ``(path -> None)`` or None. Idempotent: a query id already in the store is
        left as it is (a resumed run asks its queries again) and False is returned."""
        if not valid_id(query_id):
            raise StoreError(f"bad query id {query_id!r}: use up to 64 of [A-Za-z0-9._-]")
        if query_id in self.query_ids():
            return False
        seg_path = self.root / "segments" / f"{query_id}.npz"

        def write_segments(path: Path) -> None:
            with open(path, "wb") as f:
                np.savez(f, **segments)  # type: ignore[arg-type]  # (numpy stubs: the keywords as allow_pickle)

        _write_atomic(seg_path, write_segments)
        clip_names = None
        if clips is not None:
            clip_names = []
            for side, writer in enumerate(clips):
                path = self.root / "clips" / f"{query_id}-{side}.gif"
                _write_atomic(path, writer)
                clip_names.append(f"clips/{path.name}")
        with self._locked():
            if query_id in self.query_ids():
                return False
            self._append("queries.jsonl", {"id": query_id, "round": int(round), "created": time.time(),
                                           "clips": clip_names})
        return True

    def queries(self) -> list[dict[str, Any]]:
        return [q for q in _read_jsonl(self.root / "queries.jsonl") if valid_id(q.get("id"))]

    def query_ids(self) -> set[str]:
        return {q["id"] for q in self.queries()}

    def segments(self, query_id: str) -> dict[str, np.ndarray]:
        if not valid_id(query_id):
            raise StoreError(f"bad query id {query_id!r}")
        with np.load(self.root / "segments" / f"{query_id}.npz") as npz:
            return {k: npz[k] for k in npz.files}

    # --- labels --------------------------------------------------------------------------------------------------
    def labels(self) -> dict[str, dict[str, Any]]:
        """The first label of every labelled query, in the order they were given."""
        out: dict[str, dict[str, Any]] = {}
        for rec in _read_jsonl(self.root / "labels.jsonl"):
            if valid_id(rec.get("id")) and rec.get("label") in LABELS and rec["id"] not in out:
                out[rec["id"]] = rec
        return out

    def add_label(self, query_id: str, label: str, by: str) -> bool:
        """Record ``label`` for ``query_id``; True once it is on disk (fsynced), False if the query already had a
        label (nothing is written). An unknown query or label is a :class:`StoreError`."""
        if label not in LABELS:
            raise StoreError(f"bad label {label!r}: use one of {', '.join(LABELS)}")
        if not valid_id(query_id):
            raise StoreError(f"bad query id {query_id!r}")
        by = str(by)[:64]
        with self._locked():
            if query_id not in self.query_ids():
                raise StoreError(f"no query {query_id!r} in {self.root}")
            if query_id in self.labels():
                return False
            self._append("labels.jsonl", {"id": query_id, "label": label, "by": by, "time": time.time()})
        return True

    def pending(self) -> list[dict[str, Any]]:
        """Queries without a label, oldest first."""
        done = self.labels()
        return [q for q in self.queries() if q["id"] not in done]

    def counts(self) -> dict[str, int]:
        queries, labels = self.queries(), self.labels()
        return {"queries": len(queries), "labels": len(labels),
                "pending": sum(q["id"] not in labels for q in queries)}
