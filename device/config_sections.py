"""The config sections owned by features: `listening`, `admin` (the admin page) and `dhis2`.

Each section is one frozen pydantic model; `device.config.Config` holds them like its other
sections, and the admin page validates what it saves through the very same models, so a rule
lives in one place. The values themselves (every default) are in `device/defaults.yaml`; the
models hold only the rules. Messages are plain words that a clinic admin can act on; the
config loader puts the dotted key in front ("dhis2.org_unit: 'abc' is not a DHIS2 code ...").

Kept free of heavy imports (no numpy, no vosk): every `circlebox` command loads the config.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from device.actions import UnknownAction, validate_action_name
from device.usage import DHIS2_MEASURES


class FrozenSection(BaseModel):
    """A config section: immutable, and a key it does not know is an error (never ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# -- value rules shared by the sections ---------------------------------------------------------


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):  # "yes", 1 and "false" are typos here, not booleans
        raise ValueError(f"must be true or false, not {value!r}")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]


def between(low: float, high: float) -> Any:
    """A number type limited to [low, high], whose message says the limits in plain words."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number between {low:g} and {high:g}, not {value!r}")
        if math.isnan(value) or not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, not {value!r}")
        return float(value)

    return Annotated[float, BeforeValidator(check)]


def _whole(low: int, high: int, unit: str = "") -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number{unit} between {low} and {high}, not {value!r}")
        return value

    return Annotated[int, BeforeValidator(check)]


# -- listening ----------------------------------------------------------------------------------

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

LANGUAGE_CODE = re.compile(r"[a-z]{2,3}([_-][A-Za-z]{2,4})?")


def language_of(code: str) -> str:
    """en_US, en-GB, en -> en."""
    return re.split(r"[_-]", code)[0].lower()


def normalise_phrase(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


class _BuiltInPhrases(dict):
    """The built-in phrases of a language, put in when the config leaves `phrases` null."""


class CommandsSection(FrozenSection):
    """`listening.commands`: short spoken phrases that act like the buttons (see DEFAULT_PHRASES).

    `phrases` and `garbage` left null mean the built-in ones of `language`.
    """

    enabled: Flag  # listen for spoken commands at all (pacing by voice works without them)
    language: str  # en, ko, en_US ...: picks the built-in phrases and the language pack
    model_path: Path | None  # a vosk model folder; null: the language pack for `language`
    phrases: dict[str, str]  # phrase -> action; a map of the user's own keys
    garbage: tuple[str, ...]  # ordinary words the recogniser may hear instead of a command
    confidence_floor: between(0.0, 1.0)  # every word of the phrase must reach this
    tail_s: between(0.0, 2.0)  # silence after a command that the recogniser hears
    max_command_s: between(0.5, 10.0)  # longer utterances are talk, not commands: not decoded
    min_memory_mb: _whole(0, 65536, " of MB")  # below this much RAM (MemTotal), commands stay off

    @model_validator(mode="before")
    @classmethod
    def _built_ins_of_the_language(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # pydantic says it must be a mapping
        data = dict(data)
        language = data.get("language")
        built_in = language_of(language) if isinstance(language, str) else ""
        if data.get("phrases") is None:
            data["phrases"] = _BuiltInPhrases(DEFAULT_PHRASES.get(built_in, {}))
        if data.get("garbage") is None:
            data["garbage"] = DEFAULT_GARBAGE.get(built_in, ())
        return data

    @field_validator("language", mode="before")
    @classmethod
    def _language_code(cls, value: Any) -> Any:
        if not isinstance(value, str) or not LANGUAGE_CODE.fullmatch(value):
            raise ValueError(f"must be a language code like en or ko, not {value!r}")
        return value

    @field_validator("model_path", mode="before")
    @classmethod
    def _folder(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str | Path) or not str(value)):
            raise ValueError(f"must be a folder path or null, not {value!r}")
        return value

    @field_validator("phrases", mode="before")
    @classmethod
    def _phrases(cls, value: Any, info: ValidationInfo) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise ValueError('must be a list of phrase: action, like {"next step": next}')
        built_in = DEFAULT_PHRASES.get(language_of(info.data.get("language") or "en"), {})
        phrases: dict[str, str] = {}
        for phrase, action in value.items():
            text = normalise_phrase(phrase) if isinstance(phrase, str) else ""
            if not text:
                raise ValueError(f"the phrase {phrase!r} is empty: write the words to say")
            if text == "[unk]":
                raise ValueError("'[unk]' cannot be a command")
            if not isinstance(action, str):
                raise ValueError(f"'{text}': the action must be a word like next, not {action!r}")
            try:
                validate_action_name(action)
            except UnknownAction as exc:
                raise ValueError(f"'{text}': {exc}") from None
            if len(text.split()) < 2 and text not in built_in:
                raise ValueError(
                    f"'{text}': use two words or more, so ordinary talk does not trigger it"
                )
            phrases[text] = action
        if not phrases and not isinstance(value, _BuiltInPhrases):
            # A language without built-in phrases is fine (commands just stay off); a list
            # emptied by hand is a mistake the admin should hear about.
            raise ValueError("needs at least one phrase (or turn spoken commands off)")
        return phrases

    @field_validator("garbage", mode="before")
    @classmethod
    def _words(cls, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(
            isinstance(w, str) and w.strip() for w in value
        ):
            raise ValueError("must be a list of words")
        return tuple(w.strip().lower() for w in value)


# A capture device for `arecord -D`: a card or device name only. ALSA reads a device string as
# configuration: `file:"|cmd",raw` runs a shell command and writes the microphone to it, and
# `tee`, `file`, `plug:...` and friends are plugins that can record the room. So only these
# PCMs, with plain card/device arguments: default, hw:1,0, plughw:CARD=Device,DEV=0,
# sysdefault:CARD=x, dsnoop:CARD=x, and the box's own circlebox_in (firmware_config/alsa).
ALSA_CAPTURE_PCMS = ("default", "sysdefault", "hw", "plughw", "dsnoop", "front", "pulse", "pipewire")
_ALSA_ARG = r"(?:(?:CARD|DEV|SUBDEV)=)?[A-Za-z0-9_-]{1,32}"
ALSA_DEVICE = re.compile(
    rf"(?:{'|'.join(ALSA_CAPTURE_PCMS)}|circlebox_[a-z0-9_]{{1,32}})(?::{_ALSA_ARG}(?:,{_ALSA_ARG}){{0,2}})?"
)
MAX_ALSA_DEVICE = 100


def alsa_device_problem(value: Any) -> str | None:
    """Why `value` is not a capture device name we pass to arecord (None: it is one)."""
    if not isinstance(value, str) or not value.strip():
        return f"must be an ALSA device name like 'plughw:1,0' or null, not {value!r}"
    if len(value) > MAX_ALSA_DEVICE or not ALSA_DEVICE.fullmatch(value):
        shown = value if len(value) <= 60 else value[:60] + "..."
        return (
            f"{shown!r} is not a sound card name: use default, hw:1,0, plughw:CARD=Name,DEV=0 "
            "or sysdefault:CARD=Name (`arecord -L` lists them); plugins such as file or tee "
            "are not allowed"
        )
    return None


# The speech detectors `listening.detector` names (device/listening/detectors.py builds them).
DETECTORS = ("silero", "webrtc")
# WebRTC noise suppression in front of the detector: 1 low .. 4 very high (0 in the settings: off).
NOISE_SUPPRESSION_LEVELS = (1, 2, 3, 4)
# Listening settings only the webrtc detector uses: webrtcvad's mode, and the level gate for a
# detector that takes a fan for a voice. Silero tells voices from noise itself, and the gate
# would swallow a quiet speaker in a loud room (device/listening/listener.py).
WEBRTC_ONLY = ("vad_aggressiveness", "noise_margin_db")


class ListeningSection(FrozenSection):
    """`listening`: pacing the circle by the room's voices, through the box's microphone.

    Nothing heard is recorded or kept: frames are judged and dropped (device/listening).
    """

    enabled: Flag  # the runtime opens the microphone only when this is true
    device: str | None  # ALSA capture device for arecord, like plughw:1,0; null: the default
    vad_aggressiveness: int  # webrtcvad mode 0 (lenient) .. 3 (strict); webrtc only
    speech_start_s: between(0.09, 2.0)  # this much mostly-speech audio starts speech
    speech_start_ratio: between(0.3, 1.0)  # share of speech frames needed in that window
    speech_end_hangover_s: between(0.09, 2.0)  # speech ends after this much non-speech
    noise_margin_db: between(0.0, 40.0)  # a frame must be this much louder than the room; webrtc only
    min_speech_db: between(-96.0, -10.0)  # and louder than this (dBFS): below it is silence
    noise_rise_s: between(0.1, 120.0)  # how slowly the room's level follows a louder room
    noise_fall_s: between(0.05, 60.0)  # how quickly it follows a quieter room
    noise_window_s: between(0.5, 30.0)  # a sound that never dips for this long is noise
    self_mute_tail_s: between(0.0, 5.0)  # deaf this long after the box stops playing (echo)
    preroll_s: between(0.0, 1.0)  # audio kept before a speech start, for commands only
    detector: str  # silero (robust in noise) or webrtc (cheaper, fooled by fans and babble)
    noise_suppression: int  # WebRTC noise suppression before the detector: 0 off, 1 low .. 4 very high
    speech_enter_prob: between(0.05, 0.99)  # detector probability that enters speech
    speech_exit_prob: between(0.01, 0.95)  # below this a frame is surely not speech
    end_margin_s: between(0.0, 3.0)  # extra wait at the loudest room paced well; grows with noise
    too_noisy_db: between(-70.0, -10.0)  # a room louder than this (dBFS) is too noisy to be sure
    too_noisy_margin_s: between(0.0, 10.0)  # extra wait then (a voice under the noise can still be missed)
    soft_margin_s: between(0.0, 5.0)  # extra wait for a voice close to the room's noise; 0 = off
    commands: CommandsSection

    @field_validator("device", mode="before")
    @classmethod
    def _alsa_name(cls, value: Any) -> Any:
        problem = None if value is None else alsa_device_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("vad_aggressiveness", mode="before")
    @classmethod
    def _vad_mode(cls, value: Any) -> Any:
        if isinstance(value, bool) or value not in (0, 1, 2, 3):
            raise ValueError(f"must be 0, 1, 2 or 3, not {value!r}")
        return int(value)

    @field_validator("noise_suppression", mode="before")
    @classmethod
    def _suppression_level(cls, value: Any) -> Any:
        if isinstance(value, bool) or value not in (0, *NOISE_SUPPRESSION_LEVELS):
            raise ValueError(f"must be 0 (off), 1, 2, 3 or 4, not {value!r}")
        return int(value)

    @field_validator("detector", mode="before")
    @classmethod
    def _detector_name(cls, value: Any) -> Any:
        if value not in DETECTORS:
            raise ValueError(f"must be {' or '.join(DETECTORS)}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> ListeningSection:
        if self.speech_exit_prob > self.speech_enter_prob:
            raise ValueError(
                f"speech_exit_prob ({self.speech_exit_prob:g}) must not be above "
                f"speech_enter_prob ({self.speech_enter_prob:g}): speech is left below the one "
                "and entered above the other")
        return self

    @field_validator("commands", mode="before")
    @classmethod
    def _commands_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping | CommandsSection):
            raise ValueError(f"must be a mapping of command settings, not {value!r}")
        return value

    def phrases(self) -> dict[str, str]:
        return dict(self.commands.phrases)


# -- admin page ---------------------------------------------------------------------------------

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _host_name(value: Any) -> str:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            if HOSTNAME.match(value.lower().rstrip(".")):
                return value
    raise ValueError(f"'{value}' is not a host name or IP address")


def _page_language(value: str) -> str:
    if re.match(r"^(auto|[a-z]{2,3}([_-][A-Za-z]{2,4})?)$", value):
        return value
    raise ValueError(f"must be auto (the browser's language) or a language code like fr or sw, not {value!r}")


class AdminSection(FrozenSection):
    """`admin`: where the admin page listens and which names it answers to."""

    host: str  # the address it listens on; 0.0.0.0 is every network of the box
    port: _whole(1, 65535)  # 8080 by default
    allowed_hosts: tuple[Annotated[str, BeforeValidator(_host_name)], ...]  # names besides the box's own
    https: Flag  # true only behind a TLS proxy: the login cookie is then sent over https only
    # the page's language: "auto" follows the browser (Accept-Language); "fr", "sw"... fix it
    language: Annotated[str, AfterValidator(_page_language)]

    @field_validator("host", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be an address like 0.0.0.0, not {value!r}")
        return value


# -- DHIS2 --------------------------------------------------------------------------------------

DHIS2_UID = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")


def _dhis2_uid(value: Any) -> str:
    if isinstance(value, str) and DHIS2_UID.match(value):
        return value
    raise ValueError(
        f"'{value}' is not a DHIS2 code: codes are 11 letters and digits, starting with a "
        "letter (copy it from DHIS2's maintenance app)"
    )


def _measure(value: Any) -> str:
    if value in DHIS2_MEASURES:
        return value
    raise ValueError(f"'{value}' is not something the box counts (it counts: {', '.join(DHIS2_MEASURES)})")


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _course_id(value: Any) -> str:
    from device.script import STEP_ID  # a course id follows the circle id rule

    if isinstance(value, str) and STEP_ID.match(value):
        return value
    raise ValueError(f"'{value}' is not a course id: use the id in the course's file (course: ...), "
                     "lower-case letters, digits, - and _")


Dhis2Uid = Annotated[str, BeforeValidator(_dhis2_uid)]
OptionalUid = Annotated[Dhis2Uid | None, BeforeValidator(_blank_is_none)]


class Dhis2Section(FrozenSection):
    """`dhis2`: the codes of the programme's DHIS2, so usage exports import as data values."""

    org_unit: OptionalUid  # the clinic's organisation unit
    data_elements: dict[Annotated[str, AfterValidator(_measure)], Dhis2Uid]  # measure -> code
    category_option_combo: OptionalUid  # null: DHIS2's default
    attribute_option_combo: OptionalUid  # null: DHIS2's default
    courses: dict[Annotated[str, BeforeValidator(_course_id)], Dhis2Uid]  # course id -> its attribute option combo
    data_set: OptionalUid  # named in the JSON export when set
    period_type: str  # monthly or weekly
    min_circle_minutes: between(0.0, 240.0)  # shorter records are test runs, left out of exports

    @field_validator("data_elements", mode="before")
    @classmethod
    def _leave_out_blanks(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a list of measure: code, like {sessions: AbCdEfGhIj1}")
        return {k: v for k, v in value.items() if _blank_is_none(v) is not None}

    @field_validator("courses", mode="before")
    @classmethod
    def _courses_leave_out_blanks(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a list of course: attribute option combo code, "
                             "like {support-group: AbCdEfGhIj1}")
        return {k: v for k, v in value.items() if _blank_is_none(v) is not None}

    @field_validator("period_type", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        if value not in ("monthly", "weekly"):
            raise ValueError(f"choose monthly or weekly, not {value!r}")
        return value

    def missing_for_export(self) -> str | None:
        """What must still be entered before a DHIS2 export can be made (None: nothing)."""
        if not self.org_unit:
            return "dhis2.org_unit: set the facility's organisation unit code"
        if not self.data_elements:
            return f"dhis2.data_elements: enter a code for at least one of {', '.join(DHIS2_MEASURES)}"
        return None
