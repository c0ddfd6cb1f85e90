"""Shared pydantic building blocks: the strict base model and annotated value types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .units import parse_duration, parse_listen, parse_rate, parse_size

__all__ = [
    "NAME_RE",
    "RULE_ERROR",
    "SKIP_RULES",
    "Duration",
    "ListenAddress",
    "OptionalUrl",
    "PositiveDuration",
    "Rate",
    "RelativePath",
    "ResolvedPath",
    "Size",
    "StrList",
    "check_network",
    "StrictModel",
    "Url",
    "base_dir",
    "check_origin",
]

RULE_ERROR = "config_rule"
SKIP_RULES = "skip_rules"  # validation context flag: leave rule_problems() to the caller
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class StrictModel(BaseModel):
    """Unknown keys are errors. Rules spanning several fields go in :meth:`rule_problems`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def rule_problems(self) -> list[tuple[str, str]]:
        """``(field, message)`` pairs for rules that involve more than one field."""
        return []

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> StrictModel:
        if isinstance(info.context, dict) and info.context.get(SKIP_RULES):
            return self
        problems = self.rule_problems()
        if problems:
            message = "; ".join(f"{field}: {text}" if field else text for field, text in problems)
            raise PydanticCustomError(RULE_ERROR, message, {"problems": problems})
        return self


def _duration(value: object) -> float:
    return parse_duration(value)


def _size(value: object) -> int:
    return parse_size(value)


def _rate(value: object) -> object:
    return None if value is None else parse_rate(value)


def _listen(value: object) -> str:
    host, port = parse_listen(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a URL string, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {value!r}: use an absolute http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"invalid URL {value!r}: a base URL must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"invalid port in URL {value!r}") from None
    return value.strip().rstrip("/")


def _optional_url(value: object) -> object:
    return None if value is None else _url(value)


def _str_list(value: object) -> object:
    """Accept one string where a list of strings is expected."""
    return [value] if isinstance(value, str) else value


def base_dir(info: ValidationInfo) -> Path:
    """The directory relative paths are resolved against (the main config file's)."""
    context = info.context if isinstance(info.context, dict) else {}
    directory = context.get("base_dir")
    return Path(directory) if directory is not None else Path.cwd()


def _relative_path(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError(f"expected a non-empty path string, got {value!r}")
    path = Path(str(value).strip()).expanduser()
    if not path.is_absolute():
        path = base_dir(info) / path
    return Path(str(path.resolve(strict=False)))


def check_origin(origin: str) -> str:
    """A browser origin: scheme://host[:port], no path (``*`` is handled by the caller).

    A templated value (``{{ … }}``) is rendered at request time and left unchecked here.
    """
    origin = origin.strip()
    if "{{" in origin or "{%" in origin:
        return origin
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"invalid origin {origin!r}: use scheme://host[:port] without a path, "
            'e.g. "https://app.example.com"'
        )
    return origin.rstrip("/")


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(_size)]
Rate = Annotated[float | None, BeforeValidator(_rate)]
ListenAddress = Annotated[str, BeforeValidator(_listen)]
Url = Annotated[str, BeforeValidator(_url)]
OptionalUrl = Annotated[str | None, BeforeValidator(_optional_url)]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
RelativePath = Annotated[Path | None, BeforeValidator(_relative_path)]
ResolvedPath = Annotated[Path, BeforeValidator(_relative_path)]


def check_network(value: str) -> str:
    """An IP address or CIDR block (``192.0.2.0/24``, ``2001:db8::/32``), normalised."""
    import ipaddress

    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or CIDR block (e.g. 192.0.2.0/24, 2001:db8::/32)"
        ) from None
