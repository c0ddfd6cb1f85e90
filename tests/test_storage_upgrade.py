"""A data dir written by the router before the storage interface (commit c6e79dd, schema version
0) opens with this code, migrates in place, and loses nothing: every signal, run, record, step
effect, idempotency key, source hash/key/activation and schedule cursor is still there, and the
endpoints answer on their old URLs. The fixture was made by tests/fixtures/legacy/make.py."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.ports import StorageError
from router.storage import open_storage
from router.storage.sqlite import schema
from tests.daemon import RouterProcess

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def unpack(where: Path) -> dict[str, Any]:
    with tarfile.open(LEGACY / "datadir-c6e79dd.tar.gz") as tar:
        tar.extractall(where, filter="data")
    expected: dict[str, Any] = json.loads((where / "var" / "expected.json").read_text())
    return expected


def raw(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_a_data_dir_from_c6e79dd_upgrades_in_place(tmp_path: Path) -> None:
    expected = unpack(tmp_path)
    db = tmp_path / "var" / "router.db"
    assert expected["user_version"] == 0 and schema.version(sqlite3.connect(db)) == 0

    storage = open_storage(db)
    try:
        assert storage.read(lambda tx: schema.version(tx.conn)) == schema.VERSION  # type: ignore[attr-defined]
        for want in expected["signals"]:
            got = storage.read(lambda tx, sid=want["id"]: tx.get_signal(sid))
            assert got is not None, want["id"]
            assert (got.source, got.status, got.attempts, got.dedup_key) == (
                want["source"],
                want["status"],
                want["attempts"],
                want["dedup_key"],
            )
            assert got.entity.to_json() == want["entity"] or json.loads(got.entity.to_json()) == json.loads(
                want["entity"]
            )
            assert got.ack == (json.loads(want["ack"]) if want["ack"] else None)
        assert len(storage.read(lambda tx: tx.list_signals(limit=1000))) == len(expected["signals"])
        assert (
            sum(len(storage.read(lambda tx, s=s["id"]: tx.runs_for(s))) for s in expected["signals"])
            == expected["runs"]
        )
        for table, rows in expected["records"].items():
            rtype = table.removeprefix("record_")
            assert storage.read(lambda tx, t=rtype: tx.record_find(t, limit=None)) == rows
        assert sorted(storage.read(lambda tx: tx.record_types())) == sorted(
            t.removeprefix("record_") for t in expected["records"]
        )
        states = storage.read(lambda tx: tx.source_states())
        for want in expected["sources"]:
            st = states[(want["kind"], want["name"])]
            assert (st.first_hash, st.second_hash, st.api_key) == (
                want["first_hash"],
                want["second_hash"],
                want["api_key"],
            )
            assert st.active_override == (None if want["active"] is None else bool(want["active"]))
        sched = storage.read(lambda tx: tx.schedule_states())
        for want in expected["schedule_state"]:
            st = sched[want["name"]]
            assert (st.definition, st.cursor_ts, st.last_slot, st.last_signal_id) == (
                want["definition"],
                want["cursor_ts"],
                want["last_slot"],
                want["last_signal_id"],
            )
        for eff in expected["step_effects"]:
            key = (eff["signal_id"], eff["workflow"], eff["step_id"])
            recalled = storage.read(lambda tx, k=key: tx.effect_recall(k))  # type: ignore[misc]
            assert recalled is not None and recalled.record_id == eff["record_id"]
    finally:
        storage.close()
    assert raw(db, "SELECT source, key, signal_id FROM dedup ORDER BY key") == [
        (d["source"], d["key"], d["signal_id"]) for d in expected["dedup"]
    ]
    assert raw(db, "SELECT count(*) FROM schedule_slots") == [(expected["schedule_slots"],)]

    # The daemon on the same config: old URLs and keys still answer, the deactivated form stays off,
    # and the schedule carries on after its cursor, one signal per slot.
    # The config the old daemon ran, with SPEC §8's later rename: a record step names its record
    # in `record_id` (`id` is the step's own name). The data dir is what must carry over as is.
    config = (LEGACY / "config.toml").read_text().replace('id = "no-such-note"', 'record_id = "no-such-note"')
    router = RouterProcess(tmp_path, config)
    router.start()
    try:
        src = {(s["kind"], s["name"]): s for s in expected["sources"]}
        inv = src[("endpoints", "invoices")]
        r = httpx.post(
            f"{router.base}/listener/{inv['first_hash']}/{inv['second_hash']}", json={"n": 7}, timeout=10
        )
        assert r.status_code == 200 and r.json() == {"status": "received"}, r.text
        key = src[("webhooks", "payments")]["api_key"]
        r = httpx.post(
            f"{router.base}/webhooks/incoming/payments?apiKey={key}", json={"id": "new"}, timeout=10
        )
        assert r.status_code in (200, 202), r.text
        assert httpx.post(f"{router.base}/forms/contact", data={"a": "b"}, timeout=10).status_code == 404
        cursor = expected["schedule_state"][0]["cursor"]
        ticks = router.wait_for(
            lambda: [
                s for s in router.signals("--source", "schedules.tick") if s["dedup_key"] > f"tick@{cursor}"
            ],
            timeout=20,
        )
        assert ticks
        everything = router.signals()
        assert {s["id"] for s in expected["signals"]} <= {s["id"] for s in everything}
        keys = [s["dedup_key"] for s in everything if s["source"] == "schedules.tick"]
        assert len(keys) == len(set(keys))
        # Endpoints made before generated JWT pairs existed get one on the first start (schema 4),
        # their hashes untouched.
        rows = raw(
            tmp_path / "var" / "router.db",
            "SELECT name, first_hash, jwt_key, jwt_secret FROM sources WHERE kind = 'endpoints'",
        )
        assert rows and all(key and len(secret) >= 86 for _, _, key, secret in rows)
        assert {name: first for name, first, _, _ in rows}["invoices"] == inv["first_hash"]
    finally:
        assert router.stop() == 0, router.log()[-3000:]


OPEN = """
import sys
from pathlib import Path
from router.storage import open_storage
open_storage(Path(sys.argv[1])).close()
"""


def test_several_processes_migrate_one_data_dir_once(tmp_path: Path) -> None:
    unpack(tmp_path)
    db = tmp_path / "var" / "router.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, str(db)], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert raw(db, "PRAGMA user_version") == [(schema.VERSION,)]
    assert "epoch" in {row[1] for row in raw(db, "PRAGMA table_info(signals)")}


def test_a_newer_schema_is_refused_not_touched(tmp_path: Path) -> None:
    db = tmp_path / "router.db"
    open_storage(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this router"):
        open_storage(db)
    assert raw(db, "PRAGMA user_version") == [(schema.VERSION + 1,)]
