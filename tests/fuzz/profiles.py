"""Hypothesis settings profiles for the fuzz targets (loaded by conftest.py).

`ci` (the default) is derandomized, with a fixed number of examples and no example database:
every CI run replays the same inputs, so a red build is reproducible from its log and a green
build cannot turn red because the fuzzer wandered somewhere new on one run. Exploration is
done by hand with `HYPOTHESIS_PROFILE=explore` (random seeds, 10x the examples, database in
.hypothesis/); whatever it finds gets fixed and pinned as an `@example` so CI replays it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 100

_SLOW_OK = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.function_scoped_fixture,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]

settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "explore", max_examples=CI_EXAMPLES * 10, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True
)


def load() -> None:
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(ci_count: int) -> settings:
    """Settings for a target worth `ci_count` examples under `ci`, scaled for other profiles."""
    scale = settings.default.max_examples / CI_EXAMPLES
    return settings(settings.default, max_examples=max(1, int(ci_count * scale)))
