"""`circlebox simulate`: run a circle headless, in virtual time, from an events file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a circle headless in virtual time (for checking scripts)",
                       description="Runs the real engine with the real rendered audio in virtual time, "
                       "as fast as the CPU allows. Renders the script first if needed.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--script", help="script file or id")
    which.add_argument("--course", help="course id or file: runs its meetings one after another from its "
                       "first, the next one chosen as the box chooses it; the events go on across them")
    p.add_argument("--events", required=True, type=Path, help='EVENTS.jsonl: {"t": 12.5, "button": "next"} per line')
    p.add_argument("--log", required=True, type=Path, help="LOG.jsonl to write, one event per line")
    p.add_argument("--audio-out", type=Path, help="WAV of exactly what the speaker would have played")
    p.add_argument("--mic", type=Path, help="room audio WAV that the microphone hears (pacing by listening)")
    p.add_argument("--usage", type=Path, help="usage database to record the session in")
    p.add_argument("--training-log", type=Path, help="training log database to record rehearsals in")
    p.add_argument("--until", type=float, help="stop after this many seconds of virtual time")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from device.buttons import ButtonMap
    from device.commands import load_cli_config
    from device.content import ContentError, Origin, ensure_rendered, load_source, resolve_circle
    from device.errors import UserFacingError
    from device.script import ScriptError
    from device.simulate import EventsError, read_events

    config = load_cli_config(args)
    if args.course:
        return _run_course(args, config)
    try:
        source = resolve_circle(args.script, config.data_dir)  # the circle as the box would play it
        events = read_events(args.events, ButtonMap(config.buttons.map))
        if source.origin is not Origin.INSTALLED:  # an installed release is played as it was shipped
            ensure_rendered(source.loaded, source.cache, voices_dir=config.voice_dirs,
                            sample_rate=config.audio.sample_rate, loudness_lufs=config.audio.loudness_lufs,
                            system_voice=config.audio.system_voice,
                            button_names=[b.name for b in config.buttons.map])
        circle = load_source(source, config.audio.system_language)
    except (ScriptError, EventsError, ContentError) as exc:
        raise UserFacingError(str(exc)) from exc
    except LookupError as exc:  # a voice that is not installed
        raise UserFacingError(str(exc.args[0] if exc.args else exc)) from exc
    result = _simulate(args, config, circle, events)
    print(f"simulated {result.duration_s:.1f} s; final state {result.state}; "
          f"{result.events_used} of {len(events)} events used", file=sys.stderr)
    return 0


def _run_course(args: argparse.Namespace, config) -> int:
    """A whole course from one events file (device.simulate.CourseRun)."""
    from device.buttons import ButtonMap
    from device.content import ContentError
    from device.course import CourseError, check_course_circles, resolve_course
    from device.course_play import ensure_course_rendered
    from device.errors import UserFacingError
    from device.script import ScriptError
    from device.simulate import CourseRun, EventsError, read_events

    try:
        source = resolve_course(args.course, config.data_dir)
        problems = check_course_circles(source.course, config.data_dir)
        if problems:
            raise CourseError(source.describe(), problems)
        events = read_events(args.events, ButtonMap(config.buttons.map))
        ensure_course_rendered(source.course, config, config.data_dir, quiet=False)
        course = CourseRun(config, source, config.data_dir)
    except (CourseError, ScriptError, EventsError, ContentError) as exc:
        raise UserFacingError(str(exc)) from exc
    except LookupError as exc:  # a voice that is not installed
        raise UserFacingError(str(exc.args[0] if exc.args else exc)) from exc
    try:
        result = _simulate(args, config, None, events, course=course)
    except (ScriptError, ContentError) as exc:  # a later meeting's circle that cannot be played
        raise UserFacingError(str(exc)) from exc
    store = course.store
    where = "finished" if store.finished else source.course.plan()[store.position].label
    print(f"simulated {result.duration_s:.1f} s of course '{source.course_id}': {course.meetings} meetings "
          f"loaded, {len(store.current.held)} held, now at: {where}; {result.events_used} of "
          f"{len(events)} events used", file=sys.stderr)
    return 0


def _training_log(args: argparse.Namespace):  # -> TrainingLog | None
    from device.training_log import TrainingLog

    return TrainingLog(args.training_log) if args.training_log else None


def _open_listening(path: Path, config):  # -> (MicSource, Listener)
    from device.errors import UserFacingError

    try:
        from device.listening import build_listener, listening_settings, open_wav_mic
    except ImportError as exc:
        raise UserFacingError(f"listening is not available in this build: {exc}") from exc
    try:
        settings = listening_settings(config.listening)
        mic = open_wav_mic(path)
    except (ValueError, OSError) as exc:
        raise UserFacingError(f"{path}: {exc}") from exc
    listener, why_no_commands = build_listener(settings)
    if why_no_commands:
        print(f"spoken commands off: {why_no_commands}", file=sys.stderr)
    return mic, listener


def _simulate(args: argparse.Namespace, config, circle, events, **extra):
    """The run both forms share: the microphone, the usage store, the training log and the log
    file from the arguments, then `run_simulation`."""
    from device.simulate import run_simulation
    from device.usage import UsageStore

    mic = listener = None
    if args.mic:
        mic, listener = _open_listening(args.mic, config)
    usage = UsageStore(args.usage) if args.usage else None
    if not args.log.parent.exists():
        args.log.parent.mkdir(parents=True)
    try:
        with args.log.open("w", encoding="utf-8") as handle:
            return run_simulation(config, circle, events, log_handle=handle, audio_out=args.audio_out,
                                  usage=usage, mic=mic, listener=listener, until=args.until,
                                  training=_training_log(args), **extra)
    finally:
        if mic is not None:
            mic.close()
