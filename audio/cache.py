"""The prompt cache on disk: WAV files named by content key, manifests, a file-hash memo.

Layout of a cache directory:
    prompts/<key>.wav    16-bit mono PCM, one per distinct rendered prompt
    sets/<name>.json     a manifest: prompt id -> key, file, duration (written last, atomically)
    file-hashes.json     sha256 of big input files by (path, size, mtime_ns)

Every file is written atomically, so a power cut or a failed render leaves the last good state.
Stdlib and numpy only: the runtime reads manifests and WAVs through here.
"""

from __future__ import annotations

import io
import json
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np

from device.fsutil import atomic_write_bytes, atomic_write_text, sha256_file

PROMPTS_DIR = "prompts"
SETS_DIR = "sets"
HASH_MEMO = "file-hashes.json"


def cache_dir_for(data_dir: Path) -> Path:
    """Where `circlebox render` keeps prompts and manifests for a box with this data dir
    (`DataFolder.cache`; circles a content bundle installed bring their own)."""
    from device.datafolder import DataFolder

    return DataFolder(data_dir).cache


def manifest_path_for(data_dir: Path, name: str) -> Path:
    """The manifest of prompt set `name` (a script id) under this data dir."""
    return cache_dir_for(data_dir) / SETS_DIR / f"{name}.json"


class CacheError(ValueError):
    """A cache file that is missing or unreadable; the message names the file."""


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """A complete 16-bit mono WAV file in memory."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def read_wav_pcm(path: Path, sample_rate: int | None = None) -> bytes:
    """S16LE mono frames of a cache WAV; CacheError naming the file if it is not one."""
    try:
        with wave.open(str(path), "rb") as w:
            shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            frames = w.readframes(w.getnframes())
            expected = w.getnframes() * 2
    except FileNotFoundError as exc:
        raise CacheError(f"{path}: missing (render the script again)") from exc
    except (OSError, EOFError, wave.Error) as exc:
        raise CacheError(f"{path}: not a readable WAV file ({exc})") from exc
    if shape[:2] != (1, 2):
        raise CacheError(
            f"{path}: must be 16-bit mono, is {shape[1] * 8}-bit with {shape[0]} channels"
        )
    if sample_rate is not None and shape[2] != sample_rate:
        raise CacheError(f"{path}: sample rate {shape[2]} Hz, expected {sample_rate} Hz")
    if len(frames) != expected:
        raise CacheError(f"{path}: truncated ({len(frames)} of {expected} bytes)")
    return frames


def wav_duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


class PromptCache:
    """One cache directory; see the module docstring for its layout."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._memo: dict[str, Any] | None = None
        self._memo_dirty = False

    def wav_path(self, key: str) -> Path:
        return self.root / PROMPTS_DIR / f"{key}.wav"

    def relative_wav(self, key: str) -> str:
        return f"{PROMPTS_DIR}/{key}.wav"

    def has(self, key: str) -> bool:
        path = self.wav_path(key)
        return path.is_file() and path.stat().st_size > 44

    def store(self, key: str, pcm: np.ndarray, sample_rate: int) -> Path:
        path = self.wav_path(key)
        atomic_write_bytes(path, wav_bytes(pcm, sample_rate))
        return path

    def manifest_path(self, name: str) -> Path:
        return self.root / SETS_DIR / f"{name}.json"

    def write_manifest(self, name: str, manifest: dict[str, Any]) -> Path:
        path = self.manifest_path(name)
        atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
        return path

    # -- hashes of big files (a voice model is ~60 MB) ------------------------------------

    def file_sha256(self, path: Path) -> str:
        """sha256 of a file, memoised by (path, size, mtime_ns); call save_memo() after."""
        path = Path(path).resolve()
        st = path.stat()
        if self._memo is None:
            self._memo = self._load_memo()
        entry = self._memo.get(str(path))
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return str(entry["sha256"])
        digest = sha256_file(path)
        self._memo[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self._memo_dirty = True
        return digest

    def save_memo(self) -> None:
        if self._memo is not None and self._memo_dirty:
            # Forget files that are gone, so the memo does not grow forever.
            memo = {p: e for p, e in self._memo.items() if os.path.exists(p)}
            atomic_write_text(self.root / HASH_MEMO, json.dumps(memo, indent=1, sort_keys=True))
            self._memo_dirty = False

    def _load_memo(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / HASH_MEMO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # -- housekeeping ---------------------------------------------------------------------

    def unused_wavs(self) -> list[Path]:
        """Prompt files no manifest refers to (safe to delete when nothing is rendering)."""
        used: set[str] = set()
        for manifest in (self.root / SETS_DIR).glob("*.json"):
            try:
                prompts = json.loads(manifest.read_text(encoding="utf-8"))["prompts"]
            except (OSError, ValueError, KeyError):
                continue
            used.update(Path(p["file"]).name for p in prompts.values())
        return [p for p in sorted((self.root / PROMPTS_DIR).glob("*.wav")) if p.name not in used]
