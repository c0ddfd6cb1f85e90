"""config.units, config.cron, config.passwords, ConfigError formatting."""

from __future__ import annotations

import pytest

from config import ConfigError, ConfigIssue, MailboxConfig
from config.cron import normalize_crontab, validate_crontab
from config.passwords import check_password_hash, hash_password, verify_password
from config.units import is_loopback_host, parse_duration, parse_listen, parse_rate, parse_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1MiB", 1024**2),
        ("10MB", 10_000_000),
        ("512KiB", 512 * 1024),
        (4096, 4096),
        ("4096", 4096),
        ("1 GiB", 1024**3),
        ("10mb", 10_000_000),
        ("1.5KiB", 1536),
        ("100B", 100),
        (2048.0, 2048),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "lots", "10M", "-1KiB", -5, True, 1.5, None, "1 MiB extra"])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="KiB"):
        parse_size(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("1h30m", 5400.0),
        ("1w", 604800.0),
        (" 10 s ", 10.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: object, expected: float) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "soon", "10x", "-1s", -1, True, "s", "1h-", None, float("inf")])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="250ms"):
        parse_duration(value)


def test_parse_rate() -> None:
    assert parse_rate("10/s") == 10.0
    assert parse_rate("600/m") == 10.0
    assert parse_rate("5/h") == pytest.approx(5 / 3600)
    assert parse_rate("1 / minute") == pytest.approx(1 / 60)
    for bad in ("10", "10/fortnight", "0/s", 10):
        with pytest.raises(ValueError, match="COUNT/PERIOD"):
            parse_rate(bad)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("8080", ":8080", "::1:8080", "[::1]8080", "host:99999", "host:http", "bad host:80", 80):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("example.com")


def test_cron_aliases_and_weekday_numbers() -> None:
    assert normalize_crontab("@daily") == "0 0 * * *"
    assert normalize_crontab("@hourly") == "0 * * * *"
    assert normalize_crontab("0 9 * * 1-5") == "0 9 * * mon,tue,wed,thu,fri"
    assert normalize_crontab("0 9 * * 0") == "0 9 * * sun"
    assert normalize_crontab("0 9 * * 7") == "0 9 * * sun"
    assert normalize_crontab("0 9 * * */2") == "0 9 * * sun,tue,thu,sat"
    assert validate_crontab("*/5  *  * * *") == "*/5 * * * *"
    for bad in ("* * * *", "@often", "0 0 * * 8", "0 0 32 * *", ""):
        with pytest.raises(ValueError):
            validate_crontab(bad)


def test_password_hashes() -> None:
    encoded = hash_password("correct horse", iterations=1000)
    assert check_password_hash(encoded) == encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("wrong", encoded)
    assert not verify_password("x", "not-a-hash")
    for bad in ("secret", "pbkdf2_sha256$10$salt$AAAA", "pbkdf2_sha256$1000$$AAAA", "md5$1000$s$AAAA"):
        with pytest.raises(ValueError, match="pbkdf2_sha256"):
            check_password_hash(bad)


def test_mailbox_matching() -> None:
    box = MailboxConfig(address=["Support@Example.com", "*@help.example.com"])
    assert box.matches("support@example.com") and box.matches("<SUPPORT@example.COM>")
    assert box.matches("anyone@help.example.com")
    assert not box.matches("sales@example.com")
    with pytest.raises(ValueError, match="support@example.com"):
        MailboxConfig(address="not-an-address")


def test_config_error_format() -> None:
    error = ConfigError(
        [
            ConfigIssue("router.toml", "http.listen", "bad"),
            ConfigIssue("conf.d/x.toml", "", "invalid TOML: oops"),
        ]
    )
    assert str(error) == "router.toml: http.listen: bad\nconf.d/x.toml: invalid TOML: oops"
    assert error.issues[0].key == "http.listen"
