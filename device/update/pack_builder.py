"""Building the payload of `language_pack` and `voice` bundles on the technician's laptop.

A language pack's source is a folder with `pack.yaml` (device.language_packs) and the
recordings it names, in any format audio.takes reads (WAV, MP3, OGG, FLAC): the folder a
therapist filled on a box's admin page (`<data>/language-packs/<lang>/`) is one. Several
languages: a folder of such folders. Each recording is trimmed, checked and levelled exactly
as a take on the admin page (audio.takes), at the box's sample rate and loudness. A `text`
entry is spoken by the pack's `voice`, and only when that voice declares the pack's language
(device.language's rule; `allow_other_language: true` in the pack lifts it): the bundle then
holds recordings only, and the box never needs a voice to play it.

A voice bundle's source is a folder of Piper voices, `<id>.onnx` next to `<id>.onnx.json`.
What is built is checked by the installer's own rule (device.update.payload_checks) first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from device.update.builder import BuildError
from device.update.payload_checks import VOICES_DIR, language_pack_problem, voices_folder_problem


def _pack_sources(src: Path) -> list[Path]:
    from device.language_packs import PACK_FILE

    src = Path(src)
    if (src / PACK_FILE).is_file():
        return [src]
    found = sorted(p for p in src.iterdir() if p.is_dir() and (p / PACK_FILE).is_file()) if src.is_dir() else []
    if not found:
        raise BuildError(f"{src}: no {PACK_FILE} in it or in a folder under it (a language pack is a folder "
                         f"with {PACK_FILE} and its recordings)")
    return found


def _speak(pack, folder: Path, texts: dict[str, str], work: Path, *, voice_dirs, sample_rate: int,
           loudness_lufs: float) -> dict[str, Path]:
    """The pack's text entries, spoken by its voice: prompt id -> rendered WAV."""
    from audio.render import RenderError, RenderSettings, render_prompt_set
    from audio.voices import VoiceNotFound, find_voice
    from device.language import language_name, same_language

    first = next(iter(texts))
    if not pack.voice:
        raise BuildError(f"{folder}/pack.yaml: {first} is text, and the pack names no voice to say it: record it, "
                         f"or add `voice:` with a {language_name(pack.language)} voice")
    try:
        voice = find_voice(pack.voice, voice_dirs)
    except VoiceNotFound as exc:
        raise BuildError(f"{folder}/pack.yaml: {exc}") from exc
    if not pack.allow_other_language and not same_language(voice.language, pack.language):
        raise BuildError(f"{folder}/pack.yaml: {pack.voice} speaks {language_name(voice.language)}; this pack is in "
                         f"{language_name(pack.language)}: record {first} (and every text entry), or use a "
                         f"{language_name(pack.language)} voice")
    try:
        result = render_prompt_set("language-pack", {pid: (text,) for pid, text in texts.items()}, pack.voice,
                                   work / "render", voices_dir=voice_dirs,
                                   settings=RenderSettings(sample_rate=sample_rate, loudness_lufs=loudness_lufs))
    except (RenderError, VoiceNotFound) as exc:
        raise BuildError(f"{folder}/pack.yaml: {exc}") from exc
    import json

    manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    return {pid: work / "render" / entry["file"] for pid, entry in manifest["prompts"].items()}


def build_language_packs(src: Path, work: Path, *, sample_rate: int, loudness_lufs: float,
                         voice_dirs=None) -> dict[str, Path]:
    """Normalise the pack(s) under `src` into `work`; returns the bundle's files (payload path
    -> file): `<lang>/pack.yaml` and `<lang>/<prompt>-<hash>.wav`."""
    from audio.takes import TakeError, make_take
    from device.language_packs import PACK_FILE, PackError, load_pack

    work = Path(work)
    out_root = work / "payload"
    files: dict[str, Path] = {}
    for folder in _pack_sources(src):
        try:
            pack = load_pack(folder)
        except PackError as exc:
            raise BuildError(str(exc)) from exc
        assert pack is not None
        target = out_root / pack.language
        if target.exists():
            raise BuildError(f"{folder}: a second pack for language {pack.language}")
        target.mkdir(parents=True)
        wavs: dict[str, bytes] = {}
        for pid, name in pack.recordings().items():
            path = folder / name
            try:
                wavs[pid] = make_take(path.read_bytes(), name, sample_rate, loudness_lufs).wav
            except OSError as exc:
                raise BuildError(f"{folder}/{PACK_FILE}: {pid}: cannot read {name} ({exc.strerror or exc})") from exc
            except TakeError as exc:
                raise BuildError(f"{folder}/{name} ({pid}): {exc}") from exc
        texts = {pid: p.text for pid, p in pack.prompts.items() if p.text is not None}
        if texts:
            spoken = _speak(pack, folder, texts, work / pack.language, voice_dirs=voice_dirs,
                            sample_rate=sample_rate, loudness_lufs=loudness_lufs)
            wavs.update({pid: path.read_bytes() for pid, path in spoken.items()})
        prompts = {}
        for pid, wav in sorted(wavs.items()):
            name = f"{pid.replace(':', '-')}-{hashlib.sha256(wav).hexdigest()[:10]}.wav"
            (target / name).write_bytes(wav)
            prompts[pid] = {"audio": name}
            files[f"{pack.language}/{name}"] = target / name
        text = yaml.safe_dump({"language": pack.language, "prompts": prompts}, sort_keys=False, allow_unicode=True)
        (target / PACK_FILE).write_text(text, encoding="utf-8")
        files[f"{pack.language}/{PACK_FILE}"] = target / PACK_FILE
    problem = language_pack_problem(out_root)
    if problem:
        raise BuildError(f"{src}: {problem}")
    return files


def build_voices(src: Path) -> dict[str, Path]:
    """The Piper voices in `src` as a voice bundle's files: `voices/<id>.onnx` and
    `voices/<id>.onnx.json`. Refuses anything else, a model without its config, and a config
    that declares no language. A newer voice bundle replaces the older one whole: give it every
    extra voice the boxes should keep."""
    from audio.voices import CONFIG_SUFFIX, MODEL_SUFFIX

    src = Path(src)
    if not src.is_dir():
        raise BuildError(f"{src}: not a folder of Piper voices")
    files: dict[str, Path] = {}
    for path in sorted(src.iterdir()):
        if path.is_symlink() or not path.is_file():
            raise BuildError(f"{path}: only the voices' own files go in a voice bundle (no folders or links)")
        if not path.name.endswith((MODEL_SUFFIX, CONFIG_SUFFIX)):
            raise BuildError(f"{path}: not a Piper voice file (<id>{MODEL_SUFFIX} and <id>{CONFIG_SUFFIX})")
        files[f"{VOICES_DIR}/{path.name}"] = path
    problem = voices_folder_problem(src)
    if problem:
        raise BuildError(f"{src}: {problem}")
    return files


__all__ = ["build_language_packs", "build_voices"]
