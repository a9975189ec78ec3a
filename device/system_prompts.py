"""The box's own words: the "system" prompt set, rendered once like a circle's prompts.

Not part of any circle: the setup code said when two buttons are held together, the
technician's self-test (`circlebox doctor`) and, when the updater is installed, what the box
says during a USB update. Rendered with `audio.system_voice` into the set named "system"
(manifest `<data>/cache/sets/system.json`); the runtime loads it next to the circle's set.

Text only, English; a language pack (device.language_packs, `audio.system_language`) puts
its recordings in place of these when the box loads its sounds. Stale means the prompts (or
voice, or render settings) changed since the set was rendered: the manifest's meta carries a
sha256 of all of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio.render import Progress, RenderResult
    from device.config import Config

SYSTEM_SET = "system"
DEFAULT_SYSTEM_VOICE = "en_US-joe-medium"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Prompts said with the same words as another: a language pack records them once.
SAME_WORDS: dict[str, str] = {f"digit:{d}": f"sys:digit_{d}" for d in range(10)}

# Self-test prompts that do not depend on the button map.
DOCTOR_PROMPTS: dict[str, str] = {
    "sys:doctor_start": "Self test. Follow the instructions.",
    "sys:doctor_speaker_works": "Speaker works.",
    "sys:doctor_confirm_heard": "If you heard that, press the next button.",
    "sys:doctor_mic_talk": "Microphone test. Please talk for a few seconds.",
    "sys:doctor_mic_works": "Microphone works.",
    "sys:doctor_mic_failed": "The microphone heard no speech.",
    "sys:doctor_buttons": "Button test.",
    "sys:doctor_button_failed": "That button did not work.",
    "sys:doctor_button_stuck": "A button is stuck.",
    "sys:doctor_leds": "Light test. Watch the lights. If they all work, press the next button.",
    "sys:doctor_pass": "Self test passed.",
    "sys:doctor_fail": "Self test failed. Read the report.",
}


def default_button_names() -> tuple[str, ...]:
    """The button names of the package's default button map."""
    from device.config import package_defaults

    return tuple(str(b["name"]) for b in package_defaults()["buttons"]["map"])


def spoken_name(button_name: str) -> str:
    """How a button's config name is said: `goto_share` -> "goto share"."""
    return " ".join(button_name.replace("_", " ").replace("-", " ").split())


def press_prompt_id(button_name: str) -> str:
    return f"sys:doctor_press_{button_name}"


def works_prompt_id(button_name: str) -> str:
    return f"sys:doctor_works_{button_name}"


def update_prompts() -> dict[str, str]:
    """The updater's prompts (`update:...`, `digit:N`) when the updater is installed, else none."""
    try:
        from device.update import messages
    except ImportError:
        return {}
    make = getattr(messages, "prompts", None)
    return dict(make()) if callable(make) else {}


def system_prompts(config: Config | None = None, *,
                   button_names: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Every system prompt id -> its parts (text only).

    Per-button self-test prompts come from `button_names`, else the config's button map, else
    the package's default map.
    """
    if button_names is None:
        button_names = (b.name for b in config.buttons.map) if config is not None else default_button_names()
    out: dict[str, tuple[str, ...]] = {
        "sys:setup_code": ("The setup code for the admin page is",),
        "sys:setup_code_again": ("Again:",),
        **{f"sys:digit_{d}": (word,) for d, word in enumerate(DIGIT_WORDS)},
        "sys:setup_code_used": ("The admin password is already set. To reset it, use the console.",),
    }
    out.update({pid: (text,) for pid, text in DOCTOR_PROMPTS.items()})
    for name in button_names:
        said = spoken_name(name)
        out[press_prompt_id(name)] = (f"Press the {said} button.",)
        out[works_prompt_id(name)] = (f"{said.capitalize()} works.",)
    for pid, text in update_prompts().items():
        out.setdefault(pid, (text,) if isinstance(text, str) else tuple(text))
    return out


def pack_prompts(config: Config | None = None, *,
                 button_names: Iterable[str] | None = None) -> dict[str, str]:
    """Every prompt a language pack records, by id -> its English words (what to say), in the
    order the studio lists them; prompts said with the same words (SAME_WORDS) once."""
    return {pid: " ".join(p for p in parts if isinstance(p, str))
            for pid, parts in system_prompts(config, button_names=button_names).items() if pid not in SAME_WORDS}


def system_fingerprint(prompts: dict[str, Sequence[str]], voice_id: str, sample_rate: int,
                       loudness_lufs: float) -> str:
    """sha256 of everything the rendered set depends on (besides the voice files themselves)."""
    from audio.render import RENDERER_VERSION

    body = {
        "renderer": RENDERER_VERSION,
        "voice": voice_id,
        "sample_rate": sample_rate,
        "loudness_lufs": loudness_lufs,
        "prompts": {k: list(v) for k, v in prompts.items()},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def system_manifest_path(cache: Path) -> Path:
    return Path(cache) / "sets" / f"{SYSTEM_SET}.json"


def rendered_fingerprint(cache: Path) -> str | None:
    """The fingerprint stored in the rendered system set, or None when there is none."""
    try:
        meta = json.loads(system_manifest_path(cache).read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return None
    value = meta.get("prompts_sha256") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def system_rendered_matches(cache: Path, *, voice_id: str, sample_rate: int, loudness_lufs: float,
                            button_names: Iterable[str] | None = None) -> bool:
    prompts = system_prompts(button_names=button_names)
    want = system_fingerprint(prompts, voice_id, sample_rate, loudness_lufs)
    return rendered_fingerprint(cache) == want


def render_system_set(cache: Path, *, voice_id: str = DEFAULT_SYSTEM_VOICE, voices_dir: Path | None = None,
                      sample_rate: int = 22050, loudness_lufs: float = -18.0,
                      button_names: Iterable[str] | None = None, progress: Progress | None = None,
                      force: bool = False) -> RenderResult | None:
    """Render the system set into `cache` unless it is already up to date (then None).

    Imports the renderer (Piper): for the CLI, tests and the admin page, never the runtime.
    Raises audio.voices.VoiceNotFound or audio.render.RenderError; the old set then stays.
    """
    prompts = system_prompts(button_names=button_names)
    fingerprint = system_fingerprint(prompts, voice_id, sample_rate, loudness_lufs)
    if not force and rendered_fingerprint(cache) == fingerprint:
        return None
    from audio.render import RenderSettings, render_prompt_set

    meta: dict[str, Any] = {"set": SYSTEM_SET, "voice": voice_id, "prompts_sha256": fingerprint}
    return render_prompt_set(SYSTEM_SET, prompts, voice_id, Path(cache), voices_dir=voices_dir,
                             settings=RenderSettings(sample_rate=sample_rate, loudness_lufs=loudness_lufs),
                             progress=progress, meta=meta)


__all__ = [
    "DEFAULT_SYSTEM_VOICE",
    "SAME_WORDS",
    "SYSTEM_SET",
    "default_button_names",
    "pack_prompts",
    "press_prompt_id",
    "render_system_set",
    "rendered_fingerprint",
    "system_fingerprint",
    "system_manifest_path",
    "system_prompts",
    "system_rendered_matches",
    "update_prompts",
    "works_prompt_id",
]
