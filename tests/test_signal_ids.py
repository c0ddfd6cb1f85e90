"""Signal ids (ULIDs made by engine.entity) and received_at timestamps, against python-ulid and datetime."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from ulid import ULID

import engine.entity as entity


def test_ids_are_ulids_of_now_in_order_and_unique() -> None:
    before = time.time()
    ids = [entity.new_signal_id() for _ in range(50_000)]  # many in one millisecond: they count up
    after = time.time()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for text in ids[::997]:
        parsed = ULID.from_str(text)
        assert str(parsed) == text and before - 0.002 <= parsed.milliseconds / 1000 <= after + 0.002


def test_encoding_is_python_ulids(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(17)
    for _ in range(2000):
        ms, rand = rng.getrandbits(48), rng.getrandbits(80) | 1
        monkeypatch.setattr(entity, "_last_id", [ms, rand - 1])  # the same millisecond: rand is next
        monkeypatch.setattr(time, "time_ns", lambda ms=ms: ms * 1_000_000)
        assert entity.new_signal_id() == str(
            ULID.from_bytes(ms.to_bytes(6, "big") + rand.to_bytes(10, "big"))
        )


def test_received_at_is_utc_iso_with_milliseconds() -> None:
    for _ in range(200):
        low = datetime.now(UTC)
        text = entity.utcnow_iso()
        high = datetime.now(UTC)
        assert len(text) == 24 and text.endswith("Z")
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert low.replace(microsecond=low.microsecond // 1000 * 1000) <= at <= high
