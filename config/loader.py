"""Reading ``router.toml``: TOML parsing, ``${ENV}`` expansion, includes, validation.

Everything is checked in one pass and reported together as one :class:`ConfigError`.
"""

from __future__ import annotations

import copy
import glob
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .checks import Parts, run_checks
from .envvars import expand_env
from .errors import ConfigError, ConfigIssue
from .issues import Locator, allowed_keys, split_key
from .schema import SOURCE_MODELS, Config, check_source_name
from .types import SKIP_RULES, StrictModel
from .workflows import WorkflowConfig

__all__ = ["load_config", "parse_config"]

Loc = tuple[str | int, ...]
_CONCATENATED = ("workflows",)


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Config:
    """Load, expand, merge and validate a config file; raise :class:`ConfigError` listing every issue."""
    absolute = Path(os.fspath(path)).expanduser().resolve()
    display = _display_name(absolute)
    loader = _Loader(display, environ)
    loader.load_file(absolute, display)
    return loader.finish(base_dir=absolute.parent, path=absolute)


def parse_config(
    data: Mapping[str, Any],
    source_name: str = "router.toml",
    *,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate already-parsed data as if it came from ``source_name``.

    ``${ENV}`` is expanded and ``include`` resolved (relative to ``base_dir``, by default the
    directory of ``source_name``), exactly as :func:`load_config` does.
    """
    directory = Path(base_dir) if base_dir is not None else Path(source_name).expanduser().resolve().parent
    loader = _Loader(source_name, environ)
    main = Path(source_name).expanduser().resolve()
    loader.stack.append(main)
    loader.loaded.add(main)
    loader.process(copy.deepcopy(dict(data)), source_name, directory.resolve())
    return loader.finish(base_dir=directory.resolve(), path=None)


def _display_name(path: Path) -> str:
    """Every file in a message is named by its absolute path: one style whatever the working
    directory or the include depth (a relative name is ambiguous once includes nest)."""
    return str(path)


class _Loader:
    def __init__(self, main_display: str, environ: Mapping[str, str] | None) -> None:
        self.main_display = main_display
        self.environ = os.environ if environ is None else environ
        self.issues: list[ConfigIssue] = []
        self.merged: dict[str, Any] = {}
        self.origins: dict[Loc, str] = {}
        self.stack: list[Path] = []
        self.loaded: set[Path] = set()
        self.displays: dict[Path, str] = {}
        self.env_keys: set[str] = set()  # keys whose ${VAR} failed: later complaints are noise

    # -- files -----------------------------------------------------------------------------
    def load_file(self, path: Path, display: str) -> None:
        self.displays[path] = display
        self.loaded.add(path)
        self.stack.append(path)
        try:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                self.issues.append(ConfigIssue(display, "", f"cannot read file: {exc.strerror or exc}"))
                return
            except UnicodeDecodeError as exc:
                self.issues.append(ConfigIssue(display, "", f"file is not valid UTF-8: {exc}"))
                return
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                self.issues.append(ConfigIssue(display, "", f"invalid TOML: {exc}"))
                return
            self.process(data, display, path.parent)
        finally:
            self.stack.pop()

    def process(self, data: dict[str, Any], display: str, directory: Path) -> None:
        """Expand ``${ENV}``, merge ``data`` into the result, then follow its includes."""
        locator = Locator(data, {}, display)

        def report(loc: Loc, message: str) -> None:
            issue = locator.issue(loc, message)
            self.issues.append(issue)
            self.env_keys.add(issue.key)

        data = expand_env(data, self.environ, report)
        includes = data.pop("include", None)
        self._merge(self.merged, data, (), display)
        for pattern in self._include_patterns(includes, display):
            self._include(pattern, display, directory)

    def _include_patterns(self, includes: Any, display: str) -> list[str]:
        if includes is None:
            return []
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list) or not all(isinstance(item, str) and item for item in includes):
            self.issues.append(
                ConfigIssue(
                    display, "include", 'expected a list of file patterns, e.g. include = ["conf.d/*.toml"]'
                )
            )
            return []
        return includes

    def _include(self, pattern: str, display: str, directory: Path) -> None:
        full = Path(pattern).expanduser()
        if not full.is_absolute():
            full = directory / full
        if glob.has_magic(str(full)):
            matches = sorted(
                Path(p).resolve() for p in glob.glob(str(full), recursive=True) if os.path.isfile(p)
            )
        elif full.is_file():
            matches = [full.resolve()]
        else:
            self.issues.append(ConfigIssue(display, "include", f"included file not found: {full}"))
            return
        for match in matches:
            if match in self.stack:
                cycle = [*self.stack[self.stack.index(match) :], match]
                chain = " -> ".join(self.displays.get(p, _display_name(p)) for p in cycle)
                hint = (
                    (
                        f"; pattern {pattern!r} matches this file itself, put included files in a "
                        "directory such as conf.d/"
                    )
                    if match == self.stack[-1]
                    else ""
                )
                self.issues.append(ConfigIssue(display, "include", f"include cycle refused: {chain}{hint}"))
            elif match not in self.loaded:
                self.load_file(match, _display_name(match))

    # -- merging ---------------------------------------------------------------------------
    def _merge(self, target: dict[str, Any], data: dict[str, Any], path: Loc, display: str) -> None:
        for key, value in data.items():
            loc = (*path, key)
            if key not in target:
                target[key] = value
                self._record(loc, value, display)
            elif isinstance(target[key], dict) and isinstance(value, dict):
                self._merge(target[key], value, loc, display)
            elif (
                not path
                and key in _CONCATENATED
                and isinstance(target[key], list)
                and isinstance(value, list)
            ):
                offset = len(target[key])
                target[key].extend(value)
                for index, item in enumerate(value):
                    self._record((key, offset + index), item, display)
            else:
                first = self.origins.get(loc, self.main_display)
                locator = Locator(self.merged, self.origins, display)
                self.issues.append(
                    ConfigIssue(
                        display,
                        locator.key(loc),
                        f"defined in both {first} and {display}; define it in one file only",
                    )
                )

    def _record(self, loc: Loc, value: Any, display: str) -> None:
        self.origins[loc] = display
        if isinstance(value, dict):
            for key, item in value.items():
                self._record((*loc, key), item, display)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    self._record((*loc, index), item, display)

    # -- validation ------------------------------------------------------------------------
    def finish(self, *, base_dir: Path, path: Path | None) -> Config:
        raw = self.merged
        self.locator = Locator(raw, self.origins, self.main_display)
        self.context = {"base_dir": base_dir}
        self.found: list[ConfigIssue] = []
        parts = Parts(raw)
        top_allowed = allowed_keys(Config, ())
        for key in raw:
            if key not in top_allowed:
                self.found.append(
                    self.locator.issue(
                        (key,), f"unknown table or key {key!r}; allowed: include, " + ", ".join(top_allowed)
                    )
                )
        for name, field in Config.model_fields.items():
            if name in SOURCE_MODELS:
                self._validate_sources(name, raw.get(name, {}), parts)
            elif name == "workflows":
                self._validate_workflows(raw.get(name, []), parts)
            else:
                model = field.annotation
                assert isinstance(model, type) and issubclass(model, StrictModel)
                instance, broken = self._validate(model, raw.get(name, {}), (name,))
                if instance is not None:
                    parts.sections[name] = instance
                    parts.broken[name] = broken
        seen = {issue.key for issue in self.found}
        for loc, message in run_checks(parts):
            issue = self.locator.issue(loc, message)
            if issue.key not in seen:  # one complaint per key: the first says what to fix
                self.found.append(issue)
        issues = self.issues + [issue for issue in self.found if issue.key not in self.env_keys]
        if issues:
            raise ConfigError(_dedupe(issues), partial=self._partial(parts, path))
        full = {**raw, **{name: raw.get(name, {}) for name in Config.model_fields if name != "workflows"}}
        try:
            config = Config.model_validate(full, context=self.context)
        except ValidationError as exc:  # pragma: no cover - the per-table pass catches these
            raise ConfigError(self.locator.from_validation_error(exc, (), Config)) from None
        config._raw = raw
        config._path = path
        config._display = self.main_display
        config._origins = self._public_origins(self.locator)
        return config

    def _partial(self, parts: Parts, path: Path | None) -> Config:
        """The tables that validated, defaults for the rest: enough for the engine's checks
        (workflow trees, templates) to run on an invalid file, so `router check` reports every
        problem in one run instead of one stage per run."""
        fields: dict[str, Any] = {}
        for name, field in Config.model_fields.items():
            if name in SOURCE_MODELS:
                fields[name] = dict(parts.sources[name])
            elif name == "workflows":
                fields[name] = [parts.workflows[i] for i in sorted(parts.workflows)]
            else:
                model = field.annotation
                assert isinstance(model, type)
                fields[name] = parts.sections.get(name) or model.model_construct()
        partial = Config.model_construct(**fields)
        partial._raw = self.merged
        partial._path = path
        partial._display = self.main_display
        partial._origins = self._public_origins(self.locator)
        return partial

    def _validate(self, model: type[StrictModel], value: Any, prefix: Loc) -> tuple[Any, set[Any]]:
        """Validate one table; on failure record its issues and, so that rules spanning fields
        are still reported, retry without the broken fields (defaults in their place).
        Returns (instance or None, names of the broken fields)."""
        try:
            return model.model_validate(value, context=self.context), set()
        except ValidationError as exc:
            self.found += self.locator.from_validation_error(exc, prefix, model)
            broken = {error["loc"][0] for error in exc.errors() if error["loc"]}
        if not isinstance(value, dict):
            return None, broken
        if not broken:
            # Only a rule spanning fields failed (reported above): the table is whole otherwise,
            # and the checks that come after (references, the engine's) still need to see it.
            try:
                return model.model_validate(value, context={**self.context, SKIP_RULES: True}), broken
            except ValidationError:
                return None, broken
        pruned = {key: item for key, item in value.items() if key not in broken}
        try:
            instance = model.model_validate(pruned, context={**self.context, SKIP_RULES: True})
        except ValidationError:
            return None, broken
        for field, text in instance.rule_problems():
            loc = split_key(field)
            if loc and loc[0] not in broken:  # table-wide rules may hinge on the broken fields
                self.found.append(self.locator.issue((*prefix, *loc), text))
        return instance, broken

    def _validate_sources(self, kind: str, table: Any, parts: Parts) -> None:
        if not isinstance(table, dict):
            self.found.append(
                self.locator.issue((kind,), f"expected tables like [{kind}.NAME], got {type(table).__name__}")
            )
            return
        for name, entry in table.items():
            try:
                check_source_name(name)
            except ValueError as exc:
                self.found.append(self.locator.issue((kind, name), str(exc)))
                continue
            instance, _ = self._validate(SOURCE_MODELS[kind], entry, (kind, name))
            if instance is not None:
                parts.sources[kind][name] = instance

    def _validate_workflows(self, workflows: Any, parts: Parts) -> None:
        if not isinstance(workflows, list):
            self.found.append(
                self.locator.issue(("workflows",), "expected [[workflows]] entries (an array of tables)")
            )
            return
        for index, entry in enumerate(workflows):
            instance, _ = self._validate(WorkflowConfig, entry, ("workflows", index))
            if instance is not None:
                parts.workflows[index] = instance

    def _public_origins(self, locator: Locator) -> dict[str, str]:
        result: dict[str, str] = {}
        for loc, display in self.origins.items():
            if len(loc) == 1 or (len(loc) == 2 and loc[0] != "workflows" and isinstance(loc[1], str)):
                result[locator.key(loc)] = display
            elif len(loc) == 2 and loc[0] == "workflows" and isinstance(loc[1], int):
                result[f"workflows[{loc[1]}]"] = display
                result[locator.key(loc)] = display
        return result


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return list(dict.fromkeys(issues))
