"""Offline rendering: every prompt of a script, synthesized once, cached by what it is made of.

A prompt's cache key hashes the voice files, its parts (text, pause lengths, recording files),
the render settings and RENDERER_VERSION, so editing one step re-renders only that step, and a
new voice or setting re-renders everything. Piper (and onnxruntime) are imported only here and
only inside functions: the device runtime never loads them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audio import loudness
from audio.cache import PromptCache, wav_duration_s
from audio.voices import Voice, find_voice
from device.problems import N_, Problem, PromptName
from device.script import Pause, Recording

if TYPE_CHECKING:
    from device.script import LoadedScript, Script

# Bump when the rendering itself changes (loudness, fades, silences) so old caches re-render.
RENDERER_VERSION = 2

Parts = Sequence[str | Pause | Recording]
Progress = Callable[[int, int, str, bool], None]


@dataclass(frozen=True)
class RenderSettings:
    sample_rate: int = 22050
    loudness_lufs: float = -18.0
    length_scale: float | None = None  # Piper speed: >1 slower; None keeps the voice's own
    sentence_silence_s: float = 0.3


class RenderError(RuntimeError):
    """A prompt that cannot be rendered; the message starts with the prompt id. The message is
    a device.problems.Problem (`problem`): English as printed, translatable on the admin page."""

    def __init__(self, prompt_id: str, reason: str):
        self.prompt_id = prompt_id
        self.problem = Problem(N_("prompt %(prompt)s: %(reason)s"), prompt=prompt_id, reason=reason)
        super().__init__(self.problem)


def _reason(exc: BaseException) -> str:
    """An exception's message, kept as a Problem when it is one (so it can still be translated)."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, Problem) else (str(exc) or type(exc).__name__)


@dataclass
class RenderResult:
    manifest_path: Path
    rendered: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0  # all prompts of the set
    elapsed_s: float = 0.0
    rendered_seconds: float = 0.0  # only the prompts synthesized this time


def format_progress(done: int, total: int, prompt_id: str, reused_count: int) -> str:
    return f"rendering {done}/{total} {prompt_id} ...  (reused {reused_count})"


def _has_text(parts: Parts) -> bool:
    return any(isinstance(p, str) for p in parts)


class _Synth:
    """Piper, loaded on first use (a fully cached render never loads it)."""

    def __init__(self, voice: Voice, settings: RenderSettings):
        self.voice_info = voice
        self.settings = settings
        self._voice: Any = None

    def speak(self, text: str) -> np.ndarray:
        from piper import PiperVoice, SynthesisConfig

        if self._voice is None:
            self._voice = PiperVoice.load(self.voice_info.model_path, self.voice_info.config_path)
        config = SynthesisConfig(length_scale=self.settings.length_scale)
        rate = int(self._voice.config.sample_rate)
        gap = np.zeros(round(self.settings.sentence_silence_s * rate))
        pieces: list[np.ndarray] = []
        for chunk in self._voice.synthesize(text, config):
            audio = np.asarray(chunk.audio_float_array, dtype=np.float64)
            if audio.size == 0 or not np.any(audio):
                continue
            pieces += [gap] if pieces else []
            pieces.append(loudness.fade(audio, rate))
        if not pieces:
            raise ValueError(Problem(N_("the text %(text)s gives no speech (nothing to pronounce)"),
                                     text=repr(text[:60])))
        return resample(np.concatenate(pieces), rate, self.settings.sample_rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Float samples from `rate` to `target` Hz (soxr, high quality); unchanged if equal."""
    if rate == target:
        return np.asarray(x, dtype=np.float64)
    import soxr

    return np.asarray(soxr.resample(x, rate, target, quality="HQ"), dtype=np.float64)


_resample = resample  # the old private name, still used by local_admin.circles


def decode_recording(path: Path, sample_rate: int) -> np.ndarray:
    """An uploaded WAV/MP3/OGG/FLAC as mono float samples at `sample_rate`.

    Decoded in chunks with its length checked from the header first (`audio.recording`), so a
    small file of hours of sound is refused instead of filling the memory.
    """
    from audio.recording import RecordingError, decode_mono

    try:
        mono = decode_mono(path, sample_rate)
    except RecordingError as exc:
        raise ValueError(Problem(N_("recording %(name)s: %(why)s"), name=path.name, why=_reason(exc))) from exc
    return np.asarray(mono, dtype=np.float64)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Renderer:
    """Keys and renders the prompts of one set."""

    def __init__(
        self,
        cache: PromptCache,
        voice: Voice | None,
        recordings_dir: Path | None,
        settings: RenderSettings,
    ):
        self.cache = cache
        self.voice = voice
        self.recordings_dir = recordings_dir
        self.settings = settings
        self.synth = _Synth(voice, settings) if voice else None
        self.voice_key = (
            {
                "model": cache.file_sha256(voice.model_path),
                "config": cache.file_sha256(voice.config_path),
            }
            if voice
            else None
        )

    def _recording_path(self, prompt_id: str, part: Recording) -> Path:
        if self.recordings_dir is None:
            reason = Problem(N_("recording %(name)s: this script has no recordings folder"), name=part.audio)
            raise RenderError(prompt_id, reason)
        path = self.recordings_dir / part.audio
        if not path.is_file():
            reason = Problem(N_("recording %(name)s not found in %(folder)s"), name=part.audio,
                             folder=str(self.recordings_dir))
            raise RenderError(prompt_id, reason)
        return path

    def key(self, prompt_id: str, parts: Parts) -> str:
        described: list[dict[str, Any]] = []
        for part in parts:
            if isinstance(part, str):
                described.append({"text": part})
            elif isinstance(part, Pause):
                described.append({"pause": float(part.pause)})
            else:
                path = self._recording_path(prompt_id, part)
                described.append({"recording": self.cache.file_sha256(path)})
        blob = {
            "renderer": RENDERER_VERSION,
            "voice": self.voice_key if _has_text(parts) else None,
            "settings": asdict(self.settings),
            "parts": described,
        }
        return hashlib.sha256(_canonical(blob)).hexdigest()

    def render(self, prompt_id: str, parts: Parts) -> np.ndarray:
        """The prompt as int16 samples: pieces, silences, one loudness, no clicks."""
        rate = self.settings.sample_rate
        gap = np.zeros(round(self.settings.sentence_silence_s * rate))
        pieces: list[np.ndarray] = []
        last_was_sound = False
        for part in parts:
            if isinstance(part, Pause):
                pieces.append(np.zeros(round(part.pause * rate)))
                last_was_sound = False
                continue
            try:
                if isinstance(part, str):
                    assert self.synth is not None
                    sound = self.synth.speak(part)
                else:
                    raw = decode_recording(self._recording_path(prompt_id, part), rate)
                    sound = loudness.normalise(raw, rate, self.settings.loudness_lufs)
            except RenderError:
                raise
            except Exception as exc:  # Piper, espeak or the decoder: name the prompt
                raise RenderError(prompt_id, _reason(exc)) from exc
            if last_was_sound:
                pieces.append(gap)
            pieces.append(loudness.fade(sound, rate))
            last_was_sound = True
        audio = np.concatenate(pieces)
        if not np.any(audio):
            raise RenderError(prompt_id, Problem(N_("renders to silence")))
        audio = loudness.normalise(audio, rate, self.settings.loudness_lufs)
        return loudness.to_pcm16(loudness.fade(audio, rate))


def render_prompt_set(
    name: str,
    prompts: Mapping[str, Parts],
    voice_id: str | None,
    cache_dir: Path,
    *,
    voices_dir: Path | None = None,
    recordings_dir: Path | None = None,
    settings: RenderSettings = RenderSettings(),
    progress: Progress | None = None,
    meta: Mapping[str, Any] | None = None,
) -> RenderResult:
    """Render every prompt (reusing cached ones), then write the set's manifest, last.

    Raises VoiceNotFound before anything is written, and RenderError naming the prompt; in
    both cases the previous manifest stays as it was.
    """
    start = time.monotonic()
    cache = PromptCache(Path(cache_dir))
    text_prompt = next((pid for pid, parts in prompts.items() if _has_text(parts)), None)
    voice: Voice | None = None
    if text_prompt is not None:
        if voice_id is None:
            raise RenderError(text_prompt, Problem(N_("has text, but no voice is set")))
        voice = find_voice(voice_id, voices_dir)
    result = RenderResult(manifest_path=cache.manifest_path(name))
    entries: dict[str, dict[str, Any]] = {}
    try:
        renderer = _Renderer(cache, voice, recordings_dir, settings)
        total = len(prompts)
        for done, (prompt_id, parts) in enumerate(prompts.items(), start=1):
            key = renderer.key(prompt_id, parts)
            reused = cache.has(key)
            if reused:
                duration = wav_duration_s(cache.wav_path(key))
                result.reused.append(prompt_id)
            else:
                pcm = renderer.render(prompt_id, parts)
                cache.store(key, pcm, settings.sample_rate)
                duration = pcm.size / settings.sample_rate
                result.rendered.append(prompt_id)
                result.rendered_seconds += duration
            result.audio_seconds += duration
            entries[prompt_id] = {
                "key": key,
                "file": cache.relative_wav(key),
                "duration_s": round(duration, 4),
            }
            if progress:
                progress(done, total, prompt_id, reused)
    finally:
        cache.save_memo()
    manifest = {
        "name": name,
        "meta": dict(meta or {}),
        "sample_rate": settings.sample_rate,
        "voice": voice.id if voice else None,
        "renderer": RENDERER_VERSION,
        "prompts": entries,
    }
    cache.write_manifest(name, manifest)
    result.elapsed_s = time.monotonic() - start
    return result


def refuse_wrong_language(script: Script, voices_dir: Path | None = None) -> None:
    """Raise RenderError for the first prompt device.language finds wrong (its voice speaks
    another language than the circle's, or it has words but no voice and no recording)."""
    from device.language import check_prompts

    needs_voice = script.voice is not None and any(_has_text(p) for p in script.prompts().values())
    language = find_voice(script.voice, voices_dir).language if needs_voice and script.voice else None
    problems = check_prompts(script, voice_language=language)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            reason = Problem(N_("%(prompt)s: %(problem)s (and %(count)s more prompts)"),
                             prompt=PromptName(first.prompt), problem=first.problem, count=len(problems) - 1)
        else:
            reason = Problem(N_("%(prompt)s: %(problem)s"), prompt=PromptName(first.prompt), problem=first.problem)
        raise RenderError(first.prompt.prompt_id, reason)


def render_script(
    loaded: LoadedScript,
    cache_dir: Path,
    *,
    voices_dir: Path | None = None,
    settings: RenderSettings = RenderSettings(),
    progress: Progress | None = None,
) -> RenderResult:
    """Render a loaded script's prompts into the set named after the script id.

    Refuses (RenderError naming the prompt) a prompt the box would speak in another language
    than the circle's, or could not speak at all (device.language): nothing is rendered then.
    """
    script = loaded.script
    refuse_wrong_language(script, voices_dir)
    return render_prompt_set(
        script.script,
        script.prompts(),
        script.voice,
        cache_dir,
        voices_dir=voices_dir,
        recordings_dir=loaded.recordings_dir,
        settings=settings,
        progress=progress,
        meta={
            "script": script.script,
            "version": script.version,
            "script_sha256": hashlib.sha256(loaded.text.encode("utf-8")).hexdigest(),
            "prompts_sha256": script.fingerprint(),
            "loudness_lufs": settings.loudness_lufs,
        },
    )
