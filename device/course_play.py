"""Which circle the box plays when it runs a course, and what it says before it.

`circle_for_box(config, data)` is the one answer to "which circle does the box play now":
the configured circle, or, when `session.course` is set, the circle of the meeting where the
course stands (device.course_position). The runtime, the doctor, `simulate` and the admin page
all ask it, so none of them can disagree with the box.

The course announcement ("This is session 3 of 16.") is rendered ahead of time like every
prompt: `circlebox render --course ID` renders one small sound set per course into the box's
cache (`course.<id>`, one prompt per meeting, keyed by the course's announcement texts), and
when the runtime loads a meeting's circle it adds that meeting's announcement to the circle's
SoundBank as `course:session` or `course:bus_stop`, which the engine plays before step 1. The
runtime never imports Piper: a missing or stale announcement set is a fault line, and the
circle still plays without it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.config import Config
from device.datafolder import DataFolder, data_folder
from device.problems import N_, Problem

SESSION_SOUND = "course:session"
BUS_STOP_SOUND = "course:bus_stop"


def announcement_set(course_id: str) -> str:
    """The rendered set of a course's announcements (a dot: never a circle id, so never a circle's set)."""
    return f"course.{course_id}"


def announcement_prompt(index: int) -> str:
    return f"course:meeting:{index}"


def intro_sound(meeting: Any) -> str:
    return BUS_STOP_SOUND if meeting.bus_stop else SESSION_SOUND


def announcement_prompts(course: Any) -> dict[str, list[str]]:
    """Every meeting's announcement, by prompt id, with {n} {total} {after} filled in."""
    return {announcement_prompt(m.index): [course.announcement(m)] for m in course.plan()}


def announcement_fingerprint(course: Any) -> str:
    """sha256 of the announcement texts: a changed message or plan means a render is due."""
    body = json.dumps(announcement_prompts(course), sort_keys=True).encode("utf-8")
    return hashlib.sha256(body).hexdigest()


def session_fields(course: Any, meeting: Any) -> dict[str, Any]:
    """What the engine adds to `session_started` for a meeting of a course (usage, position)."""
    return {"course": course.course, "course_version": course.version, "course_position": meeting.index,
            "session": meeting.number, "sessions_total": course.sessions_total, "bus_stop": meeting.bus_stop}


# -- where the course stands, and the circle it plays --------------------------------------------


@dataclass(frozen=True)
class CoursePlay:
    """A course as the box runs it now: the course, where it stands, the meeting it plays next."""

    course: Any  # device.course.Course
    source: Any  # device.course.CourseSource
    position: int
    meeting: Any | None  # device.course.Meeting; None once the course is finished
    circle: str  # the circle the box plays (the last meeting's, once finished)
    fault: str | None = None  # the position could not be read (plain words)
    note: str | None = None  # the course changed and the position was kept or moved

    @property
    def finished(self) -> bool:
        return self.meeting is None


def play_for(source: Any, position: int, fault: str | None = None, note: str | None = None) -> CoursePlay:
    """The meeting at `position` of a resolved course (past the end: finished, the last circle)."""
    course = source.course
    plan = course.plan()
    if position < len(plan):
        meeting = plan[position]
        return CoursePlay(course, source, position, meeting, meeting.circle, fault, note)
    return CoursePlay(course, source, len(plan), None, plan[-1].circle, fault, note)


def course_play(config: Config, data: Path | DataFolder) -> CoursePlay | None:
    """Where the configured course stands (None: no course). Raises device.course.CourseError
    when the course cannot be found or used."""
    name = getattr(config.session, "course", None)
    if not name:
        return None
    from device.course import resolve_course
    from device.course_position import read_position

    source = resolve_course(name, data)
    reading = read_position(data, source.course)
    return play_for(source, reading.position.position, reading.fault, reading.note)


def circle_for_box(config: Config, data: Path | DataFolder) -> tuple[str, Any | None]:
    """Which circle the box plays now, and the course meeting (None without a course, or once
    the course is finished)."""
    play = course_play(config, data)
    if play is None:
        return config.session.script, None
    return play.circle, play.meeting


def course_status(play: CoursePlay | None, held: set[int] | None = None) -> dict[str, Any] | None:
    """The runtime status' "course" block (the panel and the admin page show it)."""
    if play is None:
        return None
    course = play.course
    held = held or set()
    return {
        "id": course.course, "title": course.display_title, "version": course.version,
        "position": play.position, "label": "Finished" if play.finished else play.meeting.label,
        "circle": play.circle, "sessions_total": course.sessions_total, "finished": play.finished,
        "plan": [{"index": m.index, "label": m.label, "circle": m.circle, "bus_stop": m.bus_stop,
                  "held": m.index in held} for m in course.plan()],
    }


# -- the announcement's sound ---------------------------------------------------------------------


class AnnouncementMissing(RuntimeError):
    """The meeting's announcement is not rendered (plain words, with the command that fixes it).
    `spoken`: for "no voice speaks the language", each (voice, its language) the box has, so the
    admin page can say it again in the reader's language (`no_voice_problem`)."""

    def __init__(self, problem: str, spoken: list[tuple[str, str | None]] | None = None):
        super().__init__(problem)
        self.spoken = spoken


def no_voice_problem(course_id: str, language: str | None, spoken: Any) -> Problem:
    """"no voice on this box speaks Swahili (...)": why a course's announcements cannot be said."""
    from device.language import _named

    voices = [Problem(N_("%(voice)s speaks %(language)s"), voice=voice, language=_named(code))
              for voice, code in spoken or ()]
    fields = {"language": _named(language), "course": course_id}
    if voices:
        from device.course import joined

        return Problem(N_("no voice on this box speaks %(language)s (the language of course '%(course)s': "
                          "%(voices)s), so the box starts each session without saying which one it is; add a "
                          "voice of that language to have it said"), voices=joined(voices), **fields)
    return Problem(N_("no voice on this box speaks %(language)s (the language of course '%(course)s'), so the box "
                      "starts each session without saying which one it is; add a voice of that language to have "
                      "it said"), **fields)


def announcement_manifests(course: Any, data: Path | DataFolder) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each readable announcement set of `course`, with the cache it is in: the box's own cache
    first, then the installed release's (the runtime plays from them, the admin page shows them)."""
    from device.content import manifest_path

    folder = data_folder(data)
    for cache in (folder.cache, folder.installed_cache):
        try:
            manifest = json.loads(manifest_path(cache, announcement_set(course.course)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict):
            yield Path(cache), manifest


def announcement_pcm(course: Any, meeting: Any, data: Path | DataFolder, sample_rate: int) -> bytes:
    """The rendered announcement of `meeting`, from the box's cache (or the installed release's).
    Raises AnnouncementMissing in plain words."""
    from audio.cache import CacheError, read_wav_pcm

    fix = f"run `circlebox render --course {course.course}`"
    want = announcement_fingerprint(course)
    problem = f"the announcement of course '{course.course}' is not rendered: {fix}"
    for cache, manifest in announcement_manifests(course, data):
        try:
            if manifest.get("meta", {}).get("prompts_sha256") == want and manifest["meta"].get("no_voice"):
                raise AnnouncementMissing(manifest["meta"]["no_voice"])
            entry = manifest["prompts"][announcement_prompt(meeting.index)]
            matches = manifest.get("meta", {}).get("prompts_sha256") == want
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if not matches:
            problem = f"course '{course.course}' changed since its announcement was rendered: {fix}"
            continue
        if manifest.get("sample_rate") != sample_rate:
            problem = (f"the announcement of course '{course.course}' was rendered at "
                       f"{manifest.get('sample_rate')} Hz, the circle plays at {sample_rate} Hz: {fix}")
            continue
        try:
            return read_wav_pcm(Path(cache) / str(entry["file"]), sample_rate)
        except (CacheError, KeyError, TypeError) as exc:
            problem = f"the announcement of course '{course.course}' is damaged ({exc}): {fix}"
    raise AnnouncementMissing(problem)


@dataclass
class MeetingCircle:
    """A meeting's circle, loaded with its sounds, ready for the engine."""

    circle: Any  # device.content.Circle
    play: CoursePlay | None
    intro: tuple[str, ...] = ()
    session_fields: dict[str, Any] | None = None
    fault: str | None = None  # the announcement could not be added (the circle plays without it)


def load_meeting(play: CoursePlay | None, circle_name: str, data: Path | DataFolder,
                 system_language: str | None = None) -> MeetingCircle:
    """Load the circle `circle_name` (device.content, as the box plays it) and, for a meeting of
    a course, add its announcement to the circle's sounds. Raises what load_configured_circle
    raises; a missing announcement is only a fault."""
    from device.content import load_configured_circle

    circle = load_configured_circle(circle_name, data, system_language)
    if play is None or play.meeting is None:
        return MeetingCircle(circle, play)
    fields = session_fields(play.course, play.meeting)
    try:
        pcm = announcement_pcm(play.course, play.meeting, data, circle.bank.sample_rate)
    except AnnouncementMissing as exc:
        return MeetingCircle(circle, play, (), fields, str(exc))
    sound = intro_sound(play.meeting)
    circle.bank.add(sound, pcm)
    return MeetingCircle(circle, play, (sound,), fields)


# -- rendering (Piper: for the CLI, simulate and the admin page; never the runtime) ---------------


def announcement_voice(course: Any, config: Config, data: Path | DataFolder) -> str:
    """The voice that says the course's announcements: its first circle's (the group hears one
    voice), else the box's own; only one that speaks the course's language (device.language:
    the box never reads a language with another language's voice). AnnouncementMissing, in
    plain words, when neither does."""
    from audio.voices import VoiceNotFound, find_voice
    from device.content import resolve_script
    from device.language import same_language
    from device.script import ScriptError

    try:
        first = resolve_script(course.plan()[0].circle, data).script.voice
    except (ScriptError, OSError):
        first = None
    spoken = []
    for voice in dict.fromkeys(v for v in (first, config.audio.system_voice) if v):
        try:
            language = find_voice(voice, config.voice_dirs).language
        except VoiceNotFound:
            continue
        if same_language(language, course.language):
            return voice
        spoken.append((voice, language))
    raise AnnouncementMissing(no_voice_problem(course.course, course.language, spoken), spoken)


def render_announcements(course: Any, config: Config, data: Path | DataFolder, *, progress: Any = None,
                         force: bool = False) -> Any | None:
    """Render the course's announcement set into the box's cache (None: already up to date)."""
    from audio.render import RenderSettings, render_prompt_set
    from device.content import manifest_path

    folder = data_folder(data)
    want = announcement_fingerprint(course)
    path = manifest_path(folder.cache, announcement_set(course.course))
    try:
        voice = announcement_voice(course, config, folder)
    except AnnouncementMissing as exc:  # kept where the runtime looks, so its fault says why
        from audio.cache import PromptCache

        PromptCache(folder.cache).write_manifest(announcement_set(course.course), {
            "name": announcement_set(course.course), "sample_rate": config.audio.sample_rate, "voice": None,
            "meta": {"course": course.course, "version": course.version, "prompts_sha256": want,
                     "no_voice": str(exc), "no_voice_spoken": exc.spoken}, "prompts": {}})
        raise
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        current = (manifest["meta"]["prompts_sha256"] == want and manifest["voice"] == voice
                   and manifest["sample_rate"] == config.audio.sample_rate
                   and manifest["meta"].get("loudness_lufs") == config.audio.loudness_lufs)
    except (OSError, ValueError, KeyError, TypeError):
        current = False
    if current and not force:
        return None
    meta = {"course": course.course, "version": course.version, "prompts_sha256": want,
            "loudness_lufs": config.audio.loudness_lufs}
    return render_prompt_set(announcement_set(course.course), announcement_prompts(course), voice, folder.cache,
                             voices_dir=config.voice_dirs,
                             settings=RenderSettings(sample_rate=config.audio.sample_rate,
                                                     loudness_lufs=config.audio.loudness_lufs),
                             progress=progress, meta=meta)


def ensure_course_rendered(course: Any, config: Config, data: Path | DataFolder, *, quiet: bool = True) -> None:
    """Render what is missing for a course: each of its circles (not installed ones: they came
    rendered) and its announcements."""
    from device.content import Origin, ensure_rendered, resolve_circle

    for name in sorted(course.circles()):
        source = resolve_circle(name, data)
        if source.origin is Origin.INSTALLED:
            continue
        ensure_rendered(source.loaded, source.cache, voices_dir=config.voice_dirs,
                        sample_rate=config.audio.sample_rate, loudness_lufs=config.audio.loudness_lufs,
                        quiet=quiet, system_voice=config.audio.system_voice,
                        button_names=[b.name for b in config.buttons.map])
    try:
        render_announcements(course, config, data)
    except AnnouncementMissing as exc:  # the sessions still play, without saying which one
        if not quiet:
            import sys

            print(f"note: {exc}", file=sys.stderr)


__all__ = ["BUS_STOP_SOUND", "SESSION_SOUND", "AnnouncementMissing", "CoursePlay", "MeetingCircle",
           "announcement_fingerprint", "announcement_manifests", "announcement_pcm", "announcement_prompt",
           "announcement_prompts",
           "announcement_set", "announcement_voice", "circle_for_box", "course_play", "course_status",
           "ensure_course_rendered", "intro_sound", "load_meeting", "play_for", "render_announcements",
           "session_fields"]
