"""Optional spoken commands: vosk with a small grammar, fed only while someone speaks.

A grammar of commands alone maps *any* speech onto a command, at full confidence. So the
grammar also holds a "garbage" path (ordinary words of the language, and "[unk]" where the
model has it), and a result is accepted only if it is exactly one configured phrase, alone,
with every word above the confidence floor. Nothing vosk hears is kept or logged: only the
matched phrase leaves this module.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.listening.events import SAMPLE_RATE
from device.listening.settings import MODEL_PACKAGES, CommandSettings, language_of, normalise_phrase

UNK = "[unk]"
MEMINFO = Path("/proc/meminfo")


class CommandsUnavailable(RuntimeError):
    """Spoken commands cannot run; the message is the reason shown on the admin page."""


@dataclass(frozen=True)
class CommandMatch:
    phrase: str
    action: str
    confidence: float


def mem_total_mb(meminfo: Path = MEMINFO) -> int | None:
    """The board's RAM (MemTotal) in MB, or None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def find_model(settings: CommandSettings) -> Path:
    """The vosk model directory for these settings, or CommandsUnavailable saying why not."""
    if settings.model_path is not None:
        path = Path(settings.model_path)
        if not (path / "am" / "final.mdl").exists():
            raise CommandsUnavailable(
                f"speech-command model not found at {path} (listening.commands.model_path)"
            )
        return path
    lang = language_of(settings.language)
    package = MODEL_PACKAGES.get(lang)
    if package is None:
        raise CommandsUnavailable(
            f"no speech-command model for language '{settings.language}': install its language "
            "pack or set listening.commands.model_path"
        )
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise CommandsUnavailable(
            f"the speech-command language pack for '{lang}' ({package}) is not installed"
        ) from None
    path = Path(module.__file__).parent / "model"
    if not (path / "am" / "final.mdl").exists():
        raise CommandsUnavailable(f"the language pack {package} has no model at {path}")
    return path


class _NoNetwork(types.ModuleType):
    """Stands in for `requests` inside vosk, which imports it only to download models. The
    real one pulls in urllib3, which opens a socket at import (an IPv6 probe); the box is
    offline and listening must never touch the network."""

    def __getattr__(self, name: str) -> Any:
        raise CommandsUnavailable("vosk tried to use the network; models come from language packs")


def import_vosk() -> Any:
    """`import vosk` without importing requests/urllib3 (no socket is ever created)."""
    if "vosk" in sys.modules:
        return sys.modules["vosk"]
    stubbed = "requests" not in sys.modules
    if stubbed:
        sys.modules["requests"] = _NoNetwork("requests")
    try:
        import vosk
    except ImportError:
        raise CommandsUnavailable(
            "vosk is not installed (pip install 'circlebox[listen]')"
        ) from None
    finally:
        if stubbed:
            del sys.modules["requests"]
    return vosk


def load_model(model_path: Path) -> Any:
    vosk = import_vosk()
    vosk.SetLogLevel(-1)
    try:
        return vosk.Model(str(model_path))
    except Exception as exc:
        raise CommandsUnavailable(
            f"speech-command model at {model_path} could not be loaded: {exc}"
        ) from None


class CommandRecognizer:
    """vosk with a grammar of multi-word phrases; begin/feed/finish once per speech segment."""

    def __init__(
        self,
        model_path: Path | None,
        phrases: Mapping[str, str],
        confidence_floor: float,
        garbage: Sequence[str] = (),
        max_command_s: float = 3.0,
        model: Any = None,
        tail_s: float = 0.3,
    ):
        vosk = import_vosk()

        self.model = model if model is not None else load_model(Path(model_path or ""))
        self.confidence_floor = float(confidence_floor)
        self.max_command_s = float(max_command_s)
        self.tail_s = float(tail_s)
        self.decoded = 0  # utterances judged (a count, nothing else is kept)
        self.phrases = {normalise_phrase(p): a for p, a in phrases.items()}
        if not self.phrases:
            raise CommandsUnavailable("no command phrases configured")
        missing = [(p, w) for p in self.phrases for w in p.split() if not self.has_word(w)]
        if missing:
            shown = ", ".join(f"'{w}' in '{p}'" for p, w in missing[:5])
            raise CommandsUnavailable(f"command words not in the model's vocabulary: {shown}")
        phrase_words = {w for p in self.phrases for w in p.split()}
        self.garbage = tuple(
            dict.fromkeys(
                w
                for w in (normalise_phrase(g) for g in garbage)
                if w and w not in phrase_words and w not in self.phrases and self.has_word(w)
            )
        )
        grammar = [*self.phrases, *self.garbage]
        if self.has_word(UNK):
            grammar.append(UNK)
        self.grammar = tuple(grammar)
        self._rec = vosk.KaldiRecognizer(
            self.model, SAMPLE_RATE, json.dumps(grammar, ensure_ascii=False)
        )
        self._rec.SetWords(True)
        self._words: list[dict[str, Any]] = []
        self._active = False

    def has_word(self, word: str) -> bool:
        return self.model.vosk_model_find_word(word) >= 0

    # -- one speech segment --------------------------------------------------------------------
    def begin(self) -> None:
        self._rec.Reset()
        self._words = []
        self._active = True

    def feed(self, pcm: bytes) -> None:
        if not self._active:
            return
        if self._rec.AcceptWaveform(pcm):
            # vosk found its own endpoint inside the segment: keep the words, judge at the end.
            self._words.extend(json.loads(self._rec.Result()).get("result") or [])

    def abort(self) -> None:
        if self._active:
            self._rec.Reset()
        self._words = []
        self._active = False

    def finish(self) -> CommandMatch | None:
        if not self._active:
            return None
        words = self._words + (json.loads(self._rec.FinalResult()).get("result") or [])
        self._words = []
        self._active = False
        self.decoded += 1
        return self.judge(words)

    def judge(self, words: Sequence[Mapping[str, Any]]) -> CommandMatch | None:
        """Accept only a whole configured phrase, no unknown or garbage words, every word sure.

        (Dropping unsure words at the edges was tried: one more command recognised in 35, and
        one more false accept on ordinary speech. Not worth it.)"""
        if not words:
            return None
        text = normalise_phrase(" ".join(str(w.get("word", "")) for w in words))
        action = self.phrases.get(text)
        if action is None:  # garbage words, [unk], two commands, or a part of one
            return None
        confidence = min(float(w.get("conf", 0.0)) for w in words)
        if confidence < self.confidence_floor:
            return None
        return CommandMatch(text, action, confidence)

    def recognize(self, pcm: bytes) -> CommandMatch | None:
        """Whole-utterance helper (tests, bench): 16 kHz mono S16 audio in, a match or None."""
        self.begin()
        step = 4000
        for i in range(0, len(pcm), step):
            self.feed(pcm[i : i + step])
        return self.finish()


def build_recognizer(
    settings: CommandSettings,
    *,
    mem_mb: int | None = None,
    meminfo: Path = MEMINFO,
    model: Any = None,
) -> CommandRecognizer:
    """A recogniser for these settings, or CommandsUnavailable with the reason."""
    if not settings.enabled:
        raise CommandsUnavailable("spoken commands are turned off (listening.commands.enabled)")
    mem = mem_mb if mem_mb is not None else mem_total_mb(meminfo)
    if mem is not None and mem < settings.min_memory_mb:
        raise CommandsUnavailable(
            f"too little memory for spoken commands ({mem} MB, they need "
            f"{settings.min_memory_mb} MB): "
            "pacing by listening and buttons only"
        )
    if model is None:
        model = load_model(find_model(settings))
    return CommandRecognizer(
        None,
        settings.phrases,
        settings.confidence_floor,
        garbage=settings.garbage,
        max_command_s=settings.max_command_s,
        model=model,
        tail_s=settings.tail_s,
    )
