"""The detector the listener asks: Silero behind WebRTC noise suppression (issue 13).

The suppression is there so that talk next door and knocks after a turn's last word are less
often taken for the speaker going on (BENCHMARKS.md, "Noise suppression in front of Silero");
voices coming through it are checked by every listening test that runs the box's default
settings (tests/test_listening_vad.py, the real rooms)."""

from __future__ import annotations

import audio_fixtures as af
import numpy as np

from device.listening import FRAME_BYTES, Listener, listening_settings
from device.listening.detectors import NoiseSuppressed, SileroDetector, build_detector
from device.listening.listener import frame_level_db


class HandedFrames:
    """Stands in for Silero: keeps what the suppression hands it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.resets = 0

    def probability(self, frame: bytes) -> float:
        self.frames.append(frame)
        return 0.0

    def reset(self) -> None:
        self.resets += 1


def fan_frames(seconds: float, level_db: float, seed: int = 1) -> list[bytes]:
    x = af.fan(int(af.SR * seconds), np.random.default_rng(seed), level_db)
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def mean_level_db(frames: list[bytes]) -> float:
    return float(np.mean([frame_level_db(f) for f in frames]))


def test_the_detector_hears_the_room_with_its_steady_noise_taken_out():
    handed = HandedFrames()
    detector = NoiseSuppressed(handed, 1)
    fan = fan_frames(4.0, -31.0)
    for frame in fan:
        detector.probability(frame)
    assert len(handed.frames) == len(fan)
    assert all(len(f) == FRAME_BYTES for f in handed.frames)  # whole 30 ms frames, in step
    last_second = slice(-33, None)
    assert mean_level_db(handed.frames[last_second]) < mean_level_db(fan[last_second]) - 6.0


def test_after_the_microphone_was_muted_the_suppression_starts_afresh():
    fan = fan_frames(3.0, -34.0)
    used, fresh = HandedFrames(), HandedFrames()
    detector = NoiseSuppressed(used, 1)
    for frame in fan:
        detector.probability(frame)
    detector.reset()
    for frame in fan[:20]:
        detector.probability(frame)
    reference = NoiseSuppressed(fresh, 1)
    for frame in fan[:20]:
        reference.probability(frame)
    assert used.resets == 1
    assert used.frames[-20:] == fresh.frames  # nothing learnt before the mute is carried over


def test_the_box_builds_silero_behind_the_suppression_its_settings_name():
    settings = listening_settings({})
    assert settings.noise_suppression == 1  # the measured level (BENCHMARKS.md)
    detector = build_detector(settings.detector, settings.vad_aggressiveness,
                              settings.noise_suppression)
    assert isinstance(detector, NoiseSuppressed)
    assert isinstance(detector.inner, SileroDetector)
    assert isinstance(build_detector("silero", noise_suppression=0), SileroDetector)


def test_the_listeners_levels_are_the_rooms_own_not_the_suppressed_audio():
    """The meter, the noise floor and "too noisy" are the room as the microphone hears it."""
    fan = fan_frames(6.0, -31.0)
    floors = []
    for suppression in (0, 1):
        listener = Listener(listening_settings({"noise_suppression": suppression}))
        for frame in fan:
            listener.process(frame, False)
        floors.append(listener.noise_floor_db)
    assert abs(floors[0] - floors[1]) < 0.5
    assert abs(floors[1] - mean_level_db(fan)) < 3.0
