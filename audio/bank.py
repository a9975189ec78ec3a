"""Every sound the box may play, in memory, so a button press never waits on disk.

Loaded from render manifests (prompts, by prompt id) plus the generated tones (`bell:<name>`).
Stdlib `wave` and numpy only: this is on the runtime's import path, Piper is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from audio.cache import CacheError, read_wav_pcm
from audio.tones import TONES, tone_pcm

BELL_PREFIX = "bell:"


class SoundBankError(ValueError):
    """A manifest or prompt file that cannot be used; the message names the file."""


class SoundBank:
    """Sound id -> S16LE mono PCM bytes, all at one sample rate."""

    def __init__(self, sample_rate: int, sounds: dict[str, bytes] | None = None):
        self.sample_rate = sample_rate
        self._sounds: dict[str, bytes] = dict(sounds or {})

    @classmethod
    def from_manifest(cls, manifest_path: Path, *extra_manifests: Path) -> SoundBank:
        """Load each manifest's prompts (later manifests win on equal ids) and every tone."""
        bank: SoundBank | None = None
        for path in (manifest_path, *extra_manifests):
            rate, sounds = _load_manifest(Path(path))
            if bank is None:
                bank = cls(rate)
            elif rate != bank.sample_rate:
                raise SoundBankError(
                    f"{path}: sample rate {rate} Hz differs from {bank.sample_rate} Hz of "
                    f"{manifest_path}; render both with the same audio.sample_rate"
                )
            bank._sounds.update(sounds)
        assert bank is not None
        bank.add_tones()
        return bank

    def add_tones(self, names: Iterable[str] = TONES) -> None:
        for name in names:
            self._sounds[BELL_PREFIX + name] = tone_pcm(name, self.sample_rate)

    def add(self, sound_id: str, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise SoundBankError(f"{sound_id}: PCM must be whole 16-bit samples")
        self._sounds[sound_id] = bytes(pcm)

    def pcm(self, sound_id: str) -> bytes:
        try:
            return self._sounds[sound_id]
        except KeyError:
            raise KeyError(f"no sound '{sound_id}' in the bank (render the script?)") from None

    def duration_s(self, sound_id: str) -> float:
        return len(self.pcm(sound_id)) / 2 / self.sample_rate

    def ids(self) -> list[str]:
        return list(self._sounds)

    def nbytes(self) -> int:
        return sum(len(v) for v in self._sounds.values())

    def __contains__(self, sound_id: object) -> bool:
        return sound_id in self._sounds

    def __len__(self) -> int:
        return len(self._sounds)


def _load_manifest(path: Path) -> tuple[int, dict[str, bytes]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rate = int(data["sample_rate"])
        prompts = data["prompts"]
        files = {pid: str(entry["file"]) for pid, entry in prompts.items()}
    except FileNotFoundError as exc:
        raise SoundBankError(f"{path}: no such manifest (render the script first)") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SoundBankError(f"{path}: not a valid render manifest ({exc})") from exc
    cache_root = path.parent.parent  # <cache>/sets/<name>.json -> <cache>
    sounds: dict[str, bytes] = {}
    for prompt_id, rel in files.items():
        try:
            sounds[prompt_id] = read_wav_pcm(cache_root / rel, rate)
        except CacheError as exc:
            raise SoundBankError(f"{exc} (prompt {prompt_id} in {path})") from exc
    return rate, sounds
