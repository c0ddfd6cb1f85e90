"""What text search sees, the same for every backend: the words of a signal and of a query.

A signal's searchable text is its id, source, dedup key and payload (the entity without its `__`
meta, so header names and the like do not match every signal). A query is the user's words: all
must match, each whole, a word's parts in order (`ORD-4711` is `ord` then `4711`), a word ending
in `*` as a prefix. Parts are runs of letters and digits, lower-cased (SQLite FTS5's unicode61
tokenizer splits the same way; PostgreSQL gets the text already split, see postgres/search.py).

Ids are ULIDs, whose first 10 characters are the time they were made (just after `received_at`),
so a time range also bounds the id: `ulid_floor` lets the primary key narrow a scan.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.entity import Entity, ulid_time

MARGIN_MS = 10 * 60 * 1000  # an id may be made this long after its received_at (SMTP: after parsing)
TEXT_KEYS = ("__body", "__json")
_PART = re.compile(r"[^\W_]+")


def search_text(entity: Entity, dedup_key: str | None) -> str:
    """The words a search finds this signal by: keys and values as they are (not JSON-escaped,
    where a new line would glue `n` onto the next word)."""
    data = entity.data
    payload = {k: v for k, v in data.items() if not k.startswith("__") or k in TEXT_KEYS}
    out = [entity.id, entity.source]
    _walk(payload, out)
    if dedup_key:
        out.append(dedup_key)
    return " ".join(out)


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(str(k))
            _walk(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _walk(v, out)
    elif value is not None:
        out.append(value if isinstance(value, str) else json.dumps(value, default=str))


def parts(text: str) -> list[str]:
    """The words of `text` as search sees them: letters and digits, lower-cased."""
    return _PART.findall(text.lower())


@dataclass(frozen=True)
class Term:
    parts: tuple[str, ...]  # in order
    prefix: bool  # the last part as a prefix (`word*`)


def query_terms(text: str) -> list[Term]:
    """The user's words; a word with no letter or digit is dropped."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        found = parts(word.rstrip("*"))
        if found:
            terms.append(Term(tuple(found), prefix))
    return terms


def ulid_floor(iso: str, shift_ms: int) -> str:
    """The smallest ULID made at `iso` + `shift_ms`."""
    ms = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) + shift_ms
    return ulid_time(max(0, ms)) + "0" * 16
