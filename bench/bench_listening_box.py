"""Rooms of real people through the real box: the pump, the engine and the listener, as
`circlebox simulate --mic` runs them, so the sweep measures what the box does.

    decisions, truth, cpu_s = BoxRoom(data_dir).run(spec, maker)

The circle is one sharing round (`end_on_silence_s` 3 s, the same as the rooms), rendered by
Piper into `data_dir` once. A room with "prompts" gets a round whose box says a sentence
between turns; the others a round with nothing between turns. The microphone hears:

- before the first turn, the room's own background (the box introduces the round meanwhile);
- from the engine's first `turn_started`, the room of real people (tests/real_speech.py,
  built with `box_speaks=True`: the same people, pauses and noise, without fixed prompts);
- and the box's own sounds, from the moment the engine plays them, at -16 dBFS through the
  room's reverb: the mute rule (`device.pump.mic_muted`) is the box's, not the bench's.

Turn ends are the engine's `turn_ended` log events, on the room's clock. Closed loop: when the
box decides late, it speaks late, as it would in a real room; the people in the recording do
not wait for it (the rooms leave room for that). When the box leaves a turn's end to the
facilitator (a voice it did not hear clearly), the room's facilitator presses NEXT
FACILITATOR_S after that person's last word (`Facilitator`); those turns are counted apart.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

from device.listening import FRAME_SAMPLES  # noqa: E402

BOX_LEVEL_DB = -16.0  # the box's voice at the microphone: loud, it sits in the middle
START_PRESS_S = 0.5
SPOKEN_CIRCLE = "listening-sweep-spoken"
QUIET_CIRCLE = "listening-sweep-quiet"
TURNS = "{end_on_silence_s: %g, pass_on_silence_s: 15, warn_s: 600, max_s: 1200}"
FACILITATOR_S = 1.0  # she presses NEXT this long after the person's last word, when asked to


# The box's words in the sweep's circles, as recordings of Piper with its noise off
# (real_speech.box_voice): rendered from text, Piper's random noise made every render of the
# box's prompts different, and with them the rooms' figures.
PROMPT_WAV = "listening-sweep-between.wav"
ROUND_WAV = "listening-sweep-round.wav"


def circle_yaml(script_id: str, spoken_between: bool, end_on_silence_s: float) -> str:
    """One sharing round; the turns' limits far away, so only listening ends a turn."""
    between = (f"{{say: {{audio: {PROMPT_WAV}}}}}" if spoken_between else "none")
    return (f"script: {script_id}\ntitle: Listening sweep\nversion: 1\nlanguage: en_US\n"
            "voice: en_US-joe-medium\nsteps:\n  - id: share\n    kind: round\n"
            f"    prompt: {{audio: {ROUND_WAV}}}\n"
            f"    between_turns: {between}\n    turns: {TURNS % end_on_silence_s}\n")


def _wav_bytes(x: np.ndarray) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(af.SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def prepare_circles(data_dir: Path, end_on_silence_s: float = 3.0) -> None:
    """Write and render the two circles (cached in `data_dir`, so only once). The box's words
    are recordings of Piper with its noise off, so every render gives the same samples."""
    from device.content import cache_dir, ensure_rendered, resolve_script
    from device.datafolder import data_folder
    from device.fsutil import atomic_write_bytes, atomic_write_text

    folder = data_folder(data_dir)
    folder.recordings.mkdir(parents=True, exist_ok=True)
    for name, text in ((PROMPT_WAV, rs.PROMPT_TEXT), (ROUND_WAV, rs.ROUND_TEXT)):
        wav = _wav_bytes(rs.box_voice(text, folder.recordings / "voice-cache"))
        path = folder.recordings / name
        if not path.exists() or path.read_bytes() != wav:
            atomic_write_bytes(path, wav)
    for script_id, spoken in ((SPOKEN_CIRCLE, True), (QUIET_CIRCLE, False)):
        path = folder.scripts / f"{script_id}.yaml"
        text = circle_yaml(script_id, spoken, end_on_silence_s)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        ensure_rendered(resolve_script(script_id, data_dir), cache_dir(data_dir), voices_dir=None,
                        sample_rate=22050, loudness_lufs=-18.0, quiet=True)


class RoomMic:
    """The microphone of a room the box is in: the room's background until the first turn,
    then the room of people; plus whatever the box plays, from when it plays it.

    Also a log sink of the box: `turn_started`, `prompt_started` and `bell` tell it when the
    room begins and what the box says. Frames are made when they are read, so the box's sound
    is only in frames after the moment it started (causal, like a real room)."""

    def __init__(self, room: np.ndarray, bed: np.ndarray, bank: Any, ir: np.ndarray | None):
        self._room = room
        self._bed = bed
        self._bank = bank
        self._ir = ir
        self._sounds: dict[str, np.ndarray] = {}
        self._playing: list[tuple[int, np.ndarray]] = []
        self.room_at: int | None = None  # sample where the room (first turn) begins
        self.turn_ends: list[float] = []  # engine decisions, box clock
        self.pressed: list[float] = []  # turns the facilitator ended, box clock
        self._n = 0  # samples delivered

    def _sound(self, sound_id: str) -> np.ndarray:
        if sound_id not in self._sounds:
            pcm = np.frombuffer(self._bank.pcm(sound_id), dtype="<i2").astype(np.float32) / 32768
            x = af._resample(pcm, self._bank.sample_rate)
            x = af.at_level(x, BOX_LEVEL_DB) if np.any(x) else x
            self._sounds[sound_id] = af.convolve(x, self._ir) if self._ir is not None else x
        return self._sounds[sound_id]

    def __call__(self, event: str, fields: dict[str, Any], t: float) -> None:
        at = max(self._n, math.ceil(t * af.SR))
        if event == "turn_started" and self.room_at is None:
            self.room_at = max(self._n, math.ceil(t * af.SR / FRAME_SAMPLES) * FRAME_SAMPLES)
        elif event == "prompt_started":
            self._playing.append((at, self._sound(fields["prompt"])))
        elif event == "bell":
            self._playing.append((at, self._sound("bell:" + fields["bell"])))
        elif event == "turn_ended":
            (self.pressed if fields.get("reason") == "button" else self.turn_ends).append(t)

    def read_frame(self) -> bytes | None:
        a, b = self._n, self._n + FRAME_SAMPLES
        if self.room_at is None or a < self.room_at:
            x = self._bed[np.arange(a, b) % len(self._bed)].copy()
        else:
            if b - self.room_at > len(self._room):
                return None
            x = self._room[a - self.room_at:b - self.room_at].copy()
        for start, s in self._playing:
            lo, hi = max(a, start), min(b, start + len(s))
            if lo < hi:
                x[lo - a:hi - a] += s[lo - start:hi - start]
        self._playing = [(start, s) for start, s in self._playing if start + len(s) > b]
        self._n = b
        return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()

    def close(self) -> None:
        pass


class Facilitator:
    """The room's facilitator: when the box leaves the end of a turn to her (the admin page's
    clock says so, `left_to_facilitator`), she presses NEXT FACILITATOR_S after the person's
    last word, or as the next person begins if that is sooner; once a person."""

    def __init__(self, scene: af.Scene, mic: RoomMic) -> None:
        self._scene = scene
        self._mic = mic
        self._done: set[int] = set()

    def __call__(self, now: float, engine: Any) -> str | None:
        countdown = engine.countdown(now)
        if self._mic.room_at is None or not (countdown or {}).get("left_to_facilitator"):
            return None
        t = now - self._mic.room_at / af.SR  # the room's clock
        turns = self._scene.turns
        i = max((k for k, (t0, _) in enumerate(turns) if t0 <= t), default=None)
        if i is None or i in self._done:
            return None
        nxt = turns[i + 1][0] if i + 1 < len(turns) else math.inf
        if t < min(turns[i][1] + FACILITATOR_S, nxt):
            return None
        self._done.add(i)
        return "next"


@dataclass
class BoxRun:
    decisions: list[float]  # the engine's turn ends on silence, seconds on the room's clock
    scene: af.Scene  # the room (truth on the room's clock)
    cpu_s: float  # process time of the pump, engine and listener over the whole run
    listener: Any  # the box's listener after the run (its meter: noise floor, too noisy)
    room_t0: float = 0.0  # box time (s) where the room's clock starts
    pressed: list[float] = field(default_factory=list)  # the facilitator's NEXT, room's clock

    @property
    def ends(self) -> af.TurnEnds:
        """The box's decisions, and the turns it left to the facilitator, for scoring."""
        return af.TurnEnds(decisions=self.decisions, left=self.pressed)


class BoxRoom:
    """Runs rooms through `device.simulate.run_simulation` with the box's listener."""

    def __init__(self, data_dir: Path, listening: dict[str, Any] | None = None,
                 end_on_silence_s: float = 3.0):
        from device.config import load_config

        self.data_dir = Path(data_dir)
        prepare_circles(self.data_dir, end_on_silence_s)
        overrides = {"paths": {"data_dir": str(self.data_dir)}, "buttons": {"pin_factory": "mock"},
                     "listening": {"enabled": True, "commands": {"enabled": False},
                                   **(listening or {})}}
        self.config = load_config(etc_path=None, environ={}, overrides=overrides)
        self._circles: dict[str, Any] = {}

    def circle(self, script_id: str) -> Any:
        from device.content import load_configured_circle

        if script_id not in self._circles:
            self._circles[script_id] = load_configured_circle(script_id, self.data_dir)
        return self._circles[script_id]

    def run(self, spec: rs.RoomSpec, maker: af.SpeechMaker | None = None,
            scene: af.Scene | None = None, make_listener: Any = None) -> BoxRun:
        """`make_listener(settings)`: a bench's own listener (a probe that records each frame);
        by default the box's, as `build_listener` makes it."""
        from device.listening import build_listener, listening_settings
        from device.simulate import SimEvent, run_simulation

        scene = scene or rs.build_room(spec, maker, box_speaks=True)
        circle = self.circle(SPOKEN_CIRCLE if "prompts" in spec.extras else QUIET_CIRCLE)
        mic = RoomMic(scene.audio, rs.room_bed(scene, 2.0), circle.bank, scene.ir)
        c0 = time.process_time()
        settings = listening_settings(self.config.listening)
        listener = (make_listener(settings) if make_listener is not None
                    else build_listener(settings)[0])
        run_simulation(self.config, circle, [SimEvent(START_PRESS_S, "next", "bench")],
                       mic=mic, listener=listener, extra_sinks=[mic],
                       facilitator=Facilitator(scene, mic),
                       until=START_PRESS_S + 120.0 + scene.duration_s)
        cpu = time.process_time() - c0
        if mic.room_at is None:
            raise RuntimeError("the box never started a turn: is the circle a sharing round?")
        t0 = mic.room_at / af.SR
        return BoxRun([t - t0 for t in mic.turn_ends if t >= t0], scene, cpu, listener, t0,
                      [t - t0 for t in mic.pressed if t >= t0])
