"""Language packs: the box's own words (setup code, self-test, update messages) in a language.

The system set (device.system_prompts) is English text spoken by the English voice. A pack
gives, for each system prompt id, a recording in its language; the box plays the pack's
recording instead of the English prompt, for the language `audio.system_language` names.

Where packs are (DataFolder): the box's own, recorded on the admin page
(`language-packs/<lang>/`), and those a `language_pack` bundle installed
(`current/language_pack/<lang>/`). Each is a folder with `pack.yaml` and its WAVs:

    language: sw
    prompts:
      sys:setup_code: {audio: sys-setup_code-1a2b3c4d5e.wav}
      update:S01: {audio: update-S01-9f8e7d6c5b.wav}

For one prompt the box's own recording wins over the installed pack's (the therapist made it
on this box; deleting it brings the installed one back). The WAVs are ready to play: 16-bit
mono at the box's sample rate and loudness (audio.takes made them, on the admin page or in
`circlebox bundle build --kind language_pack`), so the runtime only reads them.

A prompt the pack lacks stays the box's English (decided in docs/languages.md: the setup
code and "keep the power on" must always be said; `circlebox doctor` and the admin page name
every prompt still in English). A pack never holds synthesized speech: text in a pack's
source folder is spoken by the builder only with a voice of the pack's language.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device.datafolder import DataFolder, data_folder
from device.fsutil import atomic_write_bytes, atomic_write_text
from device.problems import N_, Problem

log = logging.getLogger("circlebox.language_packs")

PACK_FILE = "pack.yaml"
MAX_PACK_BYTES = 256 * 1024
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")  # as audio.system_language
PROMPT_ID = re.compile(r"^(sys:[a-z0-9_-]{1,60}|update:[A-Za-z0-9_]{1,20}|digit:[0-9])$")
WAV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.wav$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}\.(wav|mp3|ogg|oga|flac)$", re.IGNORECASE)

BOX, INSTALLED = "box", "installed"  # where a recording of a pack comes from


class PackError(ValueError):
    """A pack.yaml the box cannot use; the message names the file and what is wrong."""


class PackPrompt(BaseModel):
    """One prompt of a pack: a recording, or (in a source folder for `bundle build` only)
    words for a voice of the pack's language to say."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    audio: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, min_length=1, max_length=600)

    @field_validator("audio")
    @classmethod
    def _file_name(cls, value: str | None) -> str | None:
        if value is not None and (not SOURCE_NAME.match(value) or ".." in value.split("/")):
            raise ValueError(Problem(N_("must be a .wav, .mp3, .ogg or .flac file inside the pack's folder")))
        return value


class LanguagePack(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    language: str = Field(pattern=LANGUAGE.pattern)
    voice: str | None = Field(default=None, max_length=120)  # speaks `text` entries (bundle build)
    allow_other_language: bool = False  # lets `voice` speak though it declares another language
    prompts: dict[str, PackPrompt] = Field(default_factory=dict)

    @field_validator("prompts")
    @classmethod
    def _known_ids(cls, value: dict[str, PackPrompt]) -> dict[str, PackPrompt]:
        for pid, prompt in value.items():
            if not PROMPT_ID.match(pid):
                raise ValueError(Problem(N_("%(id)s is not a prompt id of the box's own words (sys:…, update:…, "
                                            "digit:N)"), id=repr(pid)))
            if (prompt.audio is None) == (prompt.text is None):
                raise ValueError(Problem(N_("%(id)s: give either audio (a recording) or text, not both or neither"),
                                         id=pid))
        return value

    def recordings(self) -> dict[str, str]:
        """prompt id -> file name, for the recorded prompts."""
        return {pid: p.audio for pid, p in self.prompts.items() if p.audio is not None}


def parse_pack(text: str, source: str) -> LanguagePack:
    if len(text.encode("utf-8")) > MAX_PACK_BYTES:
        raise PackError(Problem(N_("%(source)s: larger than %(size)s KiB"), source=source,
                                size=MAX_PACK_BYTES // 1024))
    try:
        data = yaml.safe_load(text)
        return LanguagePack.model_validate(data if data is not None else {})
    except yaml.YAMLError as exc:
        raise PackError(Problem(N_("%(source)s: not valid YAML (%(detail)s)"), source=source,
                                detail=str(exc))) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or Problem(N_("(top level)"))
        raised = (first.get("ctx") or {}).get("error")
        why = raised.args[0] if isinstance(raised, ValueError) and raised.args and isinstance(
            raised.args[0], Problem) else first["msg"].removeprefix("Value error, ")
        raise PackError(Problem(N_("%(source)s: %(where)s: %(problem)s"), source=source, where=where,
                                problem=why)) from None


def load_pack(folder: Path) -> LanguagePack | None:
    """The pack in `folder`, None when there is none; PackError when it cannot be used."""
    path = Path(folder) / PACK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError(Problem(N_("%(source)s: cannot be read (%(detail)s)"), source=str(path),
                                detail=str(exc))) from None
    return parse_pack(text, str(path))


def pack_folders(data: Path | DataFolder, language: str) -> tuple[tuple[str, Path], ...]:
    """Where the packs of `language` are, the one that wins first: (origin, folder)."""
    folder = data_folder(data)
    return ((BOX, folder.language_pack(language)), (INSTALLED, folder.installed_language_pack(language)))


def pack_files(data: Path | DataFolder, language: str) -> list[Path]:
    """The pack.yaml files a runtime watches for `language` (a new take rewrites one)."""
    return [path / PACK_FILE for _origin, path in pack_folders(data, language)]


@dataclass(frozen=True)
class PackRecording:
    """One recorded prompt of the language the box speaks, and where it comes from."""

    prompt_id: str
    path: Path
    origin: str  # BOX or INSTALLED


def pack_recordings(data: Path | DataFolder, language: str) -> tuple[dict[str, PackRecording], list[str]]:
    """prompt id -> its recording (the box's own over the installed pack's), and problems in
    words (an unreadable pack.yaml, a recording it names that is not there)."""
    found: dict[str, PackRecording] = {}
    problems: list[str] = []
    for origin, folder in pack_folders(data, language):
        try:
            pack = load_pack(folder)
        except PackError as exc:
            problems.append(exc.args[0] if exc.args and isinstance(exc.args[0], Problem) else str(exc))
            continue
        if pack is None:
            continue
        for pid, name in pack.recordings().items():
            path = folder / name
            if not WAV_NAME.match(name):
                problems.append(Problem(N_("%(source)s: %(id)s: %(name)s is not a WAV the box can play; make the "
                                           "pack with `circlebox bundle build --kind language_pack`"),
                                        source=str(folder / PACK_FILE), id=pid, name=name))
                continue
            if not path.is_file():
                problems.append(Problem(N_("%(source)s: %(id)s: the recording %(name)s is not there"),
                                        source=str(folder / PACK_FILE), id=pid, name=name))
                continue
            found.setdefault(pid, PackRecording(pid, path, origin))
    return found, problems


def recording_for(prompt_id: str, recordings: Mapping[str, PackRecording]) -> PackRecording | None:
    """A prompt's recording; `digit:N` (update numbers) is said with `sys:digit_N`'s."""
    from device.system_prompts import SAME_WORDS

    return recordings.get(prompt_id) or recordings.get(SAME_WORDS.get(prompt_id, ""))


def apply_pack(bank: Any, data: Path | DataFolder, language: str | None,
               prompt_ids: Iterable[str] | None = None) -> list[str]:
    """Put the pack's recordings in place of the system set's English prompts in `bank`
    (an audio.bank.SoundBank); returns problems in words. Reads WAVs only: runtime-safe."""
    from audio.cache import CacheError, read_wav_pcm

    if not language:
        return []
    recordings, problems = pack_recordings(data, language)
    from device.system_prompts import SAME_WORDS

    ids = set(recordings) | {alias for alias, target in SAME_WORDS.items() if target in recordings}
    if prompt_ids is not None:
        ids |= set(prompt_ids)
    for pid in sorted(ids):
        rec = recording_for(pid, recordings)
        if rec is None:
            continue
        try:
            bank.add(pid, read_wav_pcm(rec.path, bank.sample_rate))
        except CacheError as exc:
            problems.append(f"{pid}: {exc}; the box says it in English (record it again)")
    for problem in problems:
        log.warning("language pack %s: %s", language, problem)
    return problems


# -- the admin page: a take for one prompt of the box's own pack --------------------------------


def _read_own(folder: Path, language: str) -> dict[str, Any]:
    pack = load_pack(folder)
    if pack is None:
        return {"language": language, "prompts": {}}
    return pack.model_dump(exclude_none=True, exclude_defaults=False)


def _write_own(folder: Path, data: dict[str, Any]) -> None:
    data["prompts"] = {pid: {k: v for k, v in p.items() if v is not None} for pid, p in data["prompts"].items()}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    parse_pack(text, str(folder / PACK_FILE))  # never write a pack the box could not read
    atomic_write_text(folder / PACK_FILE, text)


def save_take(data: Path | DataFolder, language: str, prompt_id: str, wav: bytes, digest: str) -> str:
    """Keep a checked take (audio.takes) as the box's own recording of `prompt_id`: the WAV
    first, then pack.yaml (atomic), then the replaced WAV goes. Returns the file name."""
    if not LANGUAGE.match(language) or not PROMPT_ID.match(prompt_id):
        raise PackError(f"{language} / {prompt_id}: not a language and prompt of the box")
    folder = data_folder(data).language_pack(language)
    name = f"{prompt_id.replace(':', '-')}-{digest[:10]}.wav"
    atomic_write_bytes(folder / name, wav)
    own = _read_own(folder, language)
    old = (own["prompts"].get(prompt_id) or {}).get("audio")
    own["prompts"][prompt_id] = {"audio": name}
    _write_own(folder, own)
    if old and old != name:
        (folder / old).unlink(missing_ok=True)
    return name


def delete_take(data: Path | DataFolder, language: str, prompt_id: str) -> bool:
    """Remove the box's own recording of `prompt_id` (the installed pack's, or English, plays
    again). False when there was none."""
    folder = data_folder(data).language_pack(language)
    own = _read_own(folder, language)
    entry = own["prompts"].pop(prompt_id, None)
    if entry is None:
        return False
    _write_own(folder, own)
    if entry.get("audio"):
        (folder / entry["audio"]).unlink(missing_ok=True)
    return True


# -- what is missing ------------------------------------------------------------------------------


def missing_prompts(data: Path | DataFolder, language: str, prompt_ids: Iterable[str]) -> list[str]:
    """The system prompts `language` has no recording for (the box says them in English)."""
    recordings, _problems = pack_recordings(data, language)
    return [pid for pid in prompt_ids if recording_for(pid, recordings) is None]


__all__ = [
    "BOX",
    "INSTALLED",
    "PACK_FILE",
    "LanguagePack",
    "PackError",
    "PackPrompt",
    "PackRecording",
    "apply_pack",
    "delete_take",
    "load_pack",
    "missing_prompts",
    "pack_files",
    "pack_folders",
    "pack_recordings",
    "parse_pack",
    "recording_for",
    "save_take",
]
