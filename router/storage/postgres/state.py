"""Sources and schedules on PostgreSQL: credentials, activation, cursors, slots, the scheduler lease.

Part of `PgTx` (tx.py). Each write is one statement that re-checks its own condition, so two
processes (or, later, two nodes) racing on a row cannot both win.
"""

from __future__ import annotations

from typing import Any

from router.storage import from_row
from router.storage.base import LeaseLost
from router.storage.rows import LeaseHolder, ScheduleState, SourceState


class PgState:
    conn: Any

    def now(self) -> float:
        raise NotImplementedError  # PgTx.now

    def health_touch(self, key: str) -> None:
        self.conn.execute(
            "INSERT INTO health (key, at) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET at = excluded.at",
            (key, self.now()),
        )

    # -- sources ----------------------------------------------------------------------------------------

    def source_add(
        self, kind: str, name: str, *, first_hash: str | None, second_hash: str | None, api_key: str | None
    ) -> bool:
        return (
            self.conn.execute(
                "INSERT INTO sources (kind, name, first_hash, second_hash, api_key, active, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, NULL, %s) ON CONFLICT (kind, name) DO NOTHING",
                (kind, name, first_hash, second_hash, api_key, self.now()),
            ).rowcount
            == 1
        )

    def source_pin_api_key(self, kind: str, name: str, api_key: str) -> bool:
        return (
            self.conn.execute(
                "UPDATE sources SET api_key = %s, updated_at = %s WHERE kind = %s AND name = %s AND api_key IS DISTINCT FROM %s",
                (api_key, self.now(), kind, name, api_key),
            ).rowcount
            == 1
        )

    def source_set_active(self, kind: str, name: str, active: bool) -> bool:
        return (
            self.conn.execute(
                "UPDATE sources SET active = %s, updated_at = %s WHERE kind = %s AND name = %s",
                (bool(active), self.now(), kind, name),
            ).rowcount
            == 1
        )

    def source_fill_jwt(self, kind: str, name: str, jwt_key: str, jwt_secret: str) -> bool:
        return (
            self.conn.execute(
                "UPDATE sources SET jwt_key = %s, jwt_secret = %s, updated_at = %s"
                " WHERE kind = %s AND name = %s AND jwt_secret IS NULL",
                (jwt_key, jwt_secret, self.now(), kind, name),
            ).rowcount
            == 1
        )

    def source_set_credentials(
        self,
        kind: str,
        name: str,
        *,
        first_hash: str | None = None,
        second_hash: str | None = None,
        api_key: str | None = None,
        jwt_key: str | None = None,
        jwt_secret: str | None = None,
        keep_old_until: float | None = None,
    ) -> bool:
        # An UPDATE's right-hand sides all read the row as it was, so prev_x = x keeps the old value.
        keep = {
            c: f"CASE WHEN %(until)s::float8 IS NOT NULL AND %({c})s::text IS NOT NULL THEN {c} END"
            for c in ("first_hash", "second_hash", "api_key", "jwt_key", "jwt_secret")
        }
        sets = ", ".join(f"prev_{c} = {expr}, {c} = coalesce(%({c})s, {c})" for c, expr in keep.items())
        return (
            self.conn.execute(
                f"UPDATE sources SET {sets}, prev_until = %(until)s, updated_at = %(now)s"
                " WHERE kind = %(kind)s AND name = %(name)s",
                {
                    "first_hash": first_hash,
                    "second_hash": second_hash,
                    "api_key": api_key,
                    "jwt_key": jwt_key,
                    "jwt_secret": jwt_secret,
                    "until": keep_old_until,
                    "now": self.now(),
                    "kind": kind,
                    "name": name,
                },
            ).rowcount
            == 1
        )

    def source_states(self) -> dict[tuple[str, str], SourceState]:
        rows = self.conn.execute("SELECT * FROM sources").fetchall()
        return {(row["kind"], row["name"]): from_row.source_state(row) for row in rows}

    def sources_version(self) -> float:
        row = self.conn.execute(
            "SELECT coalesce(max(updated_at), 0) AS v, count(*) AS n FROM sources"
        ).fetchone()
        return float(row["v"]) + row["n"] * 1e-9

    # -- schedules ---------------------------------------------------------------------------------------

    def schedule_states(self) -> dict[str, ScheduleState]:
        return {
            r["name"]: from_row.schedule(r)
            for r in self.conn.execute("SELECT * FROM schedule_state").fetchall()
        }

    def schedule_state(self, name: str) -> ScheduleState | None:
        row = self.conn.execute("SELECT * FROM schedule_state WHERE name = %s", (name,)).fetchone()
        return from_row.schedule(row) if row else None

    def schedule_register(
        self, name: str, definition: str, *, cursor: str | None, cursor_ts: float | None, now: float
    ) -> bool:
        return (
            self.conn.execute(
                "INSERT INTO schedule_state (name, definition, since, cursor, cursor_ts, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET definition = excluded.definition,"
                " since = excluded.since, cursor = excluded.cursor, cursor_ts = excluded.cursor_ts,"
                " updated_at = excluded.updated_at WHERE schedule_state.definition != excluded.definition",
                (name, definition, now, cursor, cursor_ts, now),
            ).rowcount
            == 1
        )

    def schedule_advance(self, name: str, cursor: str, cursor_ts: float, now: float) -> None:
        self.conn.execute(
            "UPDATE schedule_state SET cursor = %s, cursor_ts = %s, updated_at = %s"
            " WHERE name = %s AND (cursor_ts IS NULL OR cursor_ts < %s)",
            (cursor, cursor_ts, now, name, cursor_ts),
        )

    def schedule_fired(self, name: str, slot: str, fired_at: str, signal_id: str) -> None:
        self.conn.execute(
            "UPDATE schedule_state SET last_slot = %s, last_fired_at = %s, last_signal_id = %s WHERE name = %s",
            (slot, fired_at, signal_id, name),
        )

    def slot_claim(self, schedule: str, slot: str, signal_id: str, fired_at: str, now: float) -> bool:
        return (
            self.conn.execute(
                "INSERT INTO schedule_slots (schedule, slot_time, signal_id, fired_at, fired_ts)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (schedule, slot_time) DO NOTHING",
                (schedule, slot, signal_id, fired_at, now),
            ).rowcount
            == 1
        )

    def prune_slots(self, before: float) -> int:
        return self.conn.execute("DELETE FROM schedule_slots WHERE fired_ts < %s", (before,)).rowcount

    def lease_holder(self) -> LeaseHolder | None:
        row = self.conn.execute("SELECT owner, lease_until FROM schedule_lease WHERE id = 1").fetchone()
        return LeaseHolder(row["owner"], row["lease_until"]) if row else None

    def lease_acquire(self, owner: str, ttl: float, now: float, *, take_from: str | None = None) -> bool:
        return (
            self.conn.execute(
                "INSERT INTO schedule_lease (id, owner, lease_until) VALUES (1, %(owner)s, %(until)s)"
                " ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until"
                " WHERE schedule_lease.owner = excluded.owner OR schedule_lease.lease_until < %(now)s"
                " OR schedule_lease.owner = %(take_from)s",
                {"owner": owner, "until": now + ttl, "now": now, "take_from": take_from},
            ).rowcount
            == 1
        )

    def lease_renew(self, owner: str, ttl: float, now: float) -> None:
        cur = self.conn.execute(
            "UPDATE schedule_lease SET lease_until = %s WHERE id = 1 AND owner = %s", (now + ttl, owner)
        )
        if cur.rowcount != 1:
            raise LeaseLost()

    def lease_release(self, owner: str) -> None:
        self.conn.execute("DELETE FROM schedule_lease WHERE id = 1 AND owner = %s", (owner,))
