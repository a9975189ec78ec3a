"""The voice check (issue 13): does how far a voice stands out of the room, as the admin page's
meter shows it, tell which turns the box may cut into?

The open-loop replay rooms of bench/bench_listening_replay.py (real people reading, Silero's
answers cached per room). For every turn: how far its voice stood over the room's noise, its
utterances' levels added up as the engine adds them (`VoiceLevels`: the loud part, the 98th
percentile of all its sure-speech frames, what the meter shows for one utterance), and
whether a box that ended every turn on silence would have cut
into it (a turn-end decision inside it, by the engine's own model
`audio_fixtures.turn_end_decisions` without the rule that leaves a turn whose voice stood under
`CLEAR_VOICE_DB` to the facilitator: this bench is where that line comes from). Printed: turns and cut-ins
by the turn's voice level, in 3 dB bands, and the share of turns at or above
`CLEAR_VOICE_DB` (the level the meter calls heard well).

    .venv/bin/python bench/bench_listening_voice_check.py --levels=-40,-37,-34,-31
    .venv/bin/python bench/bench_listening_voice_check.py --levels=-40,-37,-34,-31 --seed-base 2990
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import audio_fixtures as af  # noqa: E402
import real_speech as rs  # noqa: E402

from bench.bench_listening_replay import (  # noqa: E402
    END_ON_SILENCE_S,
    OUT,
    ReplayDetector,
    add_room_arguments,
    answers_for,
    rooms_by_level,
)
from bench.bench_listening_sweep import (  # noqa: E402
    frames_of,
    turn_starts,
)
from device.listening import (  # noqa: E402
    CLEAR_VOICE_DB,
    Listener,
    SpeechEnded,
    VoiceLevels,
    listening_settings,
)

BANDS_DB = (6.0, 9.0, 12.0, CLEAR_VOICE_DB, 18.0, 21.0)


def turns_of_room(spec: rs.RoomSpec, maker: af.SpeechMaker) -> list[tuple[float | None, bool]]:
    """Per turn: how far its voice stood over the room, all its utterances added up as the
    engine adds them (`VoiceLevels.level_db`; None: too little sure speech to say), and whether
    a box ending every turn on silence would have cut into it."""
    scene = rs.build_room(spec, maker)
    frames = frames_of(scene)
    listener = Listener(listening_settings({}), vad=ReplayDetector(answers_for(spec, frames)))
    run = af.Run([])
    for frame, playing in frames:
        for e in listener.process(frame, playing):
            run.events.append((listener.t, e))
    # the box as it was before it left unclear turns to the facilitator: where would it cut in?
    decisions = af.turn_end_decisions(run, END_ON_SILENCE_S, turn_starts(scene), leave_unclear=False)
    out = []
    for t0, t1 in scene.turns:
        voice = VoiceLevels()
        for _, e in run.events:
            if isinstance(e, SpeechEnded) and t0 <= e.t <= t1 + END_ON_SILENCE_S:
                voice = voice + e.voice
        cut = any(t0 <= d < t1 for d in decisions)
        out.append((voice.level_db, cut))
    return out


def band_of(db: float | None) -> str:
    if db is None:
        return "not shown"
    lower = max((b for b in BANDS_DB if b <= db), default=None)
    upper = min((b for b in BANDS_DB if b > db), default=None)
    if lower is None:
        return f"below {upper:g} dB"
    return f"{lower:g} dB and over" if upper is None else f"{lower:g} to {upper:g} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_room_arguments(parser, levels="-40,-37,-34,-31")
    args = parser.parse_args()
    maker = af.SpeechMaker(OUT / "speech-cache")
    turns: list[tuple[float | None, bool]] = []
    for _level, specs in rooms_by_level(args):
        for spec in specs:
            room = turns_of_room(spec, maker)
            turns += room
            print(f"# {spec.name}: cut into {sum(c for _, c in room)} of {len(room)} turns",
                  flush=True)
    order = ["not shown", f"below {BANDS_DB[0]:g} dB",
             *(band_of(b) for b in BANDS_DB)]
    print("\n| the turn's voice over the room | turns | cut into |")
    print("|---|---|---|")
    for band in order:
        inside = [c for db, c in turns if band_of(db) == band]
        if inside:
            print(f"| {band} | {len(inside)} | {sum(inside)} |")
    clear = [c for db, c in turns if db is not None and db >= CLEAR_VOICE_DB]
    soft = [c for db, c in turns if db is None or db < CLEAR_VOICE_DB]
    print(f"\nat or over {CLEAR_VOICE_DB:g} dB (the meter: heard well): {len(clear)} turns, "
          f"cut into {sum(clear)}; below or not shown: {len(soft)} turns, cut into {sum(soft)}")


if __name__ == "__main__":
    main()
