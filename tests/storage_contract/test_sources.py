"""Source credentials: generated JWT pairs filled once, rotation with and without a grace period.

Every HTTP process rebuilds its routes from `source_states` when `sources_version` moves, so a
rotation must move it, and the previous set must come back exactly as it was replaced."""

from __future__ import annotations

from router.storage import Storage, Tx


def _add(tx: Tx) -> None:
    tx.source_add("endpoints", "e", first_hash="h1", second_hash="h2", api_key=None)
    tx.source_add("webhooks", "w", first_hash=None, second_hash=None, api_key="k1")


def test_a_jwt_pair_is_filled_once(store: Storage) -> None:
    store.write_sync(_add)
    assert store.write_sync(lambda tx: tx.source_fill_jwt("endpoints", "e", "e-1", "s" * 43)) is True
    version = store.read(lambda tx: tx.sources_version())
    assert store.write_sync(lambda tx: tx.source_fill_jwt("endpoints", "e", "e-2", "t" * 43)) is False
    st = store.read(lambda tx: tx.source_states())[("endpoints", "e")]
    assert (st.jwt_key, st.jwt_secret, st.first_hash, st.previous) == ("e-1", "s" * 43, "h1", None)
    assert store.read(lambda tx: tx.sources_version()) == version  # a no-op fill changes nothing


def test_rotation_keeps_the_replaced_credentials_until_the_deadline(store: Storage) -> None:
    store.write_sync(_add)
    store.write_sync(lambda tx: tx.source_fill_jwt("endpoints", "e", "e-1", "s1"))
    version = store.read(lambda tx: tx.sources_version())
    now = store.read(lambda tx: tx.now())
    store.write_sync(
        lambda tx: tx.source_set_credentials(
            "endpoints", "e", first_hash="h3", second_hash="h4", jwt_secret="s2", keep_old_until=now + 60
        )
    )
    assert store.read(lambda tx: tx.sources_version()) != version
    st = store.read(lambda tx: tx.source_states())[("endpoints", "e")]
    assert (st.first_hash, st.second_hash, st.jwt_key, st.jwt_secret) == ("h3", "h4", "e-1", "s2")
    prev = st.previous
    assert prev is not None and prev.until == now + 60
    # Only what was replaced: the key stayed, so there is no previous key.
    assert (prev.first_hash, prev.second_hash, prev.jwt_key, prev.jwt_secret, prev.api_key) == (
        "h1",
        "h2",
        None,
        "s1",
        None,
    )
    assert st.grace(now) is prev and st.grace(now + 61) is None

    # A second rotation with grace: the previous set is the one it replaced; the older is gone.
    store.write_sync(
        lambda tx: tx.source_set_credentials(
            "endpoints", "e", first_hash="h5", second_hash="h6", keep_old_until=now + 120
        )
    )
    prev = store.read(lambda tx: tx.source_states())[("endpoints", "e")].previous
    assert prev is not None and (prev.first_hash, prev.jwt_secret, prev.until) == ("h3", None, now + 120)

    # Without a grace: the old stop at once, and so does a grace still running.
    store.write_sync(
        lambda tx: tx.source_set_credentials("endpoints", "e", first_hash="h7", second_hash="h8")
    )
    st = store.read(lambda tx: tx.source_states())[("endpoints", "e")]
    assert (st.first_hash, st.previous) == ("h7", None)


def test_webhook_key_rotation_with_grace_leaves_other_sources_alone(store: Storage) -> None:
    store.write_sync(_add)
    now = store.read(lambda tx: tx.now())
    assert (
        store.write_sync(
            lambda tx: tx.source_set_credentials("webhooks", "w", api_key="k2", keep_old_until=now + 5)
        )
        is True
    )
    states = store.read(lambda tx: tx.source_states())
    hook = states[("webhooks", "w")]
    assert hook.api_key == "k2" and hook.previous is not None and hook.previous.api_key == "k1"
    assert states[("endpoints", "e")].previous is None
    assert store.write_sync(lambda tx: tx.source_set_credentials("webhooks", "nope", api_key="x")) is False
