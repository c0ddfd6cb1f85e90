"""The aiosmtpd seam (channels/smtp/protocol.py): every private member we override or call is
fingerprinted here. A new aiosmtpd that changes one fails this test; re-read that member upstream,
check the override still does what its row in protocol.py's docstring says, then update the hash."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import aiosmtpd
import aiosmtpd.smtp
import pytest

from channels.smtp.protocol import RouterSMTP

TESTED = "1.4.6"
UPSTREAM = {
    "__init__": "8a9ca80f23ad9bf2",  # its inspect.getmembers() loop over auth_* (our _AuthMembers)
    "_create_envelope": "54afceea638744d4",
    "_set_post_data_state": "1dc8a8abca2a8164",
    "_timeout_cb": "10a7351f9bec2818",
    "_getaddr": "0aeb21c56ac1260e",
    "smtp_DATA": "3a33f30d3fd6d02f",  # ours replaces it; it must still use the members below as ours does
    "_call_handler_hook": "6ff23a6634ea0307",
    "_reset_timeout": "fef19b94d28dff31",
    "_cb_client_connected": "a73e95bb7f362ab9",  # sets self._reader
}


def fingerprint(member: object) -> str:
    return hashlib.sha256(inspect.getsource(member).encode()).hexdigest()[:16]  # type: ignore[arg-type]


def test_the_pinned_range_is_the_tested_one() -> None:
    # pyproject.toml pins ">=1.4.6,<1.5"; the fingerprints below are of 1.4.6.
    assert aiosmtpd.__version__.startswith("1.4.") and aiosmtpd.__version__ >= TESTED, aiosmtpd.__version__


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_upstream_members_we_rely_on_are_unchanged(name: str) -> None:
    member = getattr(aiosmtpd.smtp.SMTP, name)
    assert fingerprint(member) == UPSTREAM[name], (
        f"aiosmtpd {aiosmtpd.__version__} changed SMTP.{name}: re-check channels/smtp/protocol.py's override"
    )


def test_our_overrides_are_the_listed_ones() -> None:
    """A new override of a private member must join the list (and the docstring's table)."""
    ours = {
        n for n, v in vars(RouterSMTP).items() if n.startswith("_") and not n.startswith("__") and callable(v)
    }
    assert ours <= set(UPSTREAM) | {"_read_data"}, ours - set(UPSTREAM)


def test_class_dir_lists_what_dir_lists() -> None:
    from channels.smtp.protocol import class_dir

    assert aiosmtpd.smtp.dir is class_dir  # type: ignore[attr-defined]

    class Handler:
        def handle_DATA(self) -> None: ...

    handler = Handler()
    handler.handle_RCPT = lambda: None  # type: ignore[attr-defined]  # an instance's own name counts too
    for obj in (handler, aiosmtpd.smtp.SMTP(Handler()), object()):
        assert class_dir(obj) == dir(obj), type(obj)
        assert class_dir(obj) == dir(obj)  # the cached class part, second time round
    assert "handle_RCPT" in class_dir(handler)


def test_auth_members_patch_finds_what_inspect_finds() -> None:
    assert isinstance(aiosmtpd.smtp.inspect, object) and hasattr(aiosmtpd.smtp.inspect, "getmembers")
    expected = [(n, m) for n, m in inspect.getmembers(aiosmtpd.smtp.SMTP) if n.startswith("auth_")]
    got = [(n, m) for n, m in aiosmtpd.smtp.inspect.getmembers(aiosmtpd.smtp.SMTP) if n.startswith("auth_")]
    assert [n for n, _ in got] == [n for n, _ in expected] and expected


def test_stream_reader_privates_exist() -> None:
    reader = asyncio.StreamReader(limit=1234)
    assert reader._limit == 1234  # type: ignore[attr-defined]
    assert isinstance(reader._buffer, bytearray)  # type: ignore[attr-defined]
