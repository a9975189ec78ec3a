"""What a `language_pack` or `voice` release must hold to be usable: one rule, run by the
builder on what it is about to sign and by the installer's self-test before the box switches.

    language_pack:  <lang>/pack.yaml (device.language_packs) and the WAVs it names:
                    16-bit mono, recordings only (the builder speaks any text)
    voice:          voices/<id>.onnx and voices/<id>.onnx.json (Piper), each config declaring
                    its language (`language.code`), which the editor shows
"""

from __future__ import annotations

from pathlib import Path

VOICES_DIR = "voices"


def language_pack_problem(release: Path) -> str | None:
    """The first reason the packs in `release` cannot be played, in words; None when usable."""
    from audio.cache import CacheError, read_wav_pcm
    from device.language_packs import PACK_FILE, WAV_NAME, PackError, load_pack

    release = Path(release)
    folders = sorted(p for p in release.iterdir() if p.is_dir() and not p.name.startswith("."))
    packs = [p for p in folders if (p / PACK_FILE).is_file()]
    if not packs:
        return f"no language pack in it (each language is a folder with a {PACK_FILE})"
    for folder in packs:
        try:
            pack = load_pack(folder)
        except PackError as exc:
            return str(exc).replace(str(release) + "/", "")
        assert pack is not None
        if pack.language != folder.name:
            return f"{folder.name}/{PACK_FILE} is for language {pack.language!r}, in a folder named {folder.name!r}"
        for pid, prompt in pack.prompts.items():
            if prompt.audio is None:
                return (f"{folder.name}/{PACK_FILE}: {pid} is text; a pack on the box holds recordings only "
                        "(build it with `circlebox bundle build --kind language_pack`, which speaks text)")
            if not WAV_NAME.match(prompt.audio):
                return f"{folder.name}/{PACK_FILE}: {pid}: {prompt.audio} is not a WAV file name"
            try:
                read_wav_pcm(folder / prompt.audio)
            except CacheError as exc:
                return f"{folder.name}: {pid}: {exc}".replace(str(release) + "/", "")
    return None


def voice_problem(release: Path) -> str | None:
    """The first reason the voices in `release` cannot be used, in words; None when usable."""
    return voices_folder_problem(Path(release) / VOICES_DIR, Path(release))


def voices_folder_problem(folder: Path, shown_from: Path | None = None) -> str | None:
    """The same for a folder of voices (the builder's source); paths are shown from `shown_from`."""
    from audio.voices import CONFIG_SUFFIX, MODEL_SUFFIX, scan_voices

    release = shown_from or folder
    models = sorted(folder.glob(f"*{MODEL_SUFFIX}")) if folder.is_dir() else []
    if not models:
        return f"no Piper voice in it ({VOICES_DIR}/<id>{MODEL_SUFFIX} with its {CONFIG_SUFFIX})"
    voices, problems = scan_voices(folder)
    problems = [p for p in problems if str(folder) in p]  # not the packaged voices' own
    ours = {v.id: v for v in voices if v.model_path.parent == folder}
    if problems:
        return problems[0].replace(str(release) + "/", "")
    for model in models:
        voice = ours.get(model.name[: -len(MODEL_SUFFIX)])
        if voice is None:
            return f"{model.name}: not readable as a Piper voice"
        if voice.language == "unknown":
            return (f"{voice.id}{CONFIG_SUFFIX} declares no language: add \"language\": {{\"code\": \"sw_KE\"}} "
                    "(its language) so the box can check circles against it")
        if model.stat().st_size == 0:
            return f"{model.name} is empty"
    return None


KIND_CHECKS = {"language_pack": language_pack_problem, "voice": voice_problem}


__all__ = ["KIND_CHECKS", "VOICES_DIR", "language_pack_problem", "voice_problem", "voices_folder_problem"]
