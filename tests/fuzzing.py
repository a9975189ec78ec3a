"""Shared hypothesis settings for tests/test_fuzz_*.py.

CI runs each property with a small number of examples (each file under ~20 s); the long form
multiplies them: `FUZZ_SCALE=20 .venv/bin/python -m pytest tests/test_fuzz_*.py tests/test_update_fuzz.py`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz_settings(examples: int) -> settings:
    scale = max(1, int(os.environ.get("FUZZ_SCALE", "1")))
    return settings(max_examples=examples * scale, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
