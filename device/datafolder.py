"""Where every file lives in the box's data folder: the one map all processes use.

The runtime, the admin page, the updater, the doctor, `render`, `simulate` and `bundle build`
all read one data folder (`paths.data_dir`, `/var/lib/circlebox` on a box). Each fact about
its layout lives here and nowhere else, so two processes can never disagree about where a
circle, its sounds, the usage store or the admin password is.

    <data>/
      admin-config.yaml           the admin page's config layer (device.config)
      scripts/<id>.yaml           the box's own circles (written by the admin editor)
      scripts/.drafts/<id>.yaml   a save waiting for its prompts to render
      scripts/.history/<id>/      earlier versions of a circle
      scripts/recordings/         uploaded recordings the box's circles use
      courses/<id>.yaml           the box's own courses (written by the admin page; device.course)
      cache/                      rendered sounds of the box's own circles (audio.cache)
      cache/sets/<id>.json        the rendered set of one circle (written last)
      current/<kind>              installed releases (symlinks the updater swaps)
      current/content/scripts/    circles a content bundle installed
      current/content/cache/      their rendered sounds
      current/content/courses/    courses a content bundle installed
      current/voice/voices/       Piper voices a voice bundle installed (<id>.onnx + .onnx.json)
      current/language_pack/<lang>/  language packs a bundle installed (pack.yaml + WAVs)
      language-packs/<lang>/      the box's own language packs, recorded on the admin page
      update/                     the updater's own state and incoming copies (a release is
                                  unpacked in releases/.staging: a rename never crosses a mount)
      state/clock.json            the wall clock's high-water mark
      state/last-good/<id>.yaml   the last version of each circle that played
      state/course-<id>.json      where a course stands: the meeting the box plays next
      usage.sqlite                one anonymous record per circle (device.usage)
      training.sqlite             one record per rehearsal (device.training_log)
      circle.lock                 held (flock, shared) by the runtime while a circle runs
      run/control.sock            the runtime's control socket
      admin/password.json         the admin password (the admin service's own folder)
      secrets/                    setup code, session signing key (firstboot)
      network/                    the hotspot profile (root only)
      reports/                    doctor and self-test reports
      box-id                      this box's short name
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCRIPT_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class DataFolder:
    """The data folder's layout. Pure path arithmetic: nothing is created or read here."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- configuration --------------------------------------------------------------------
    @property
    def admin_config(self) -> Path:
        return self.root / "admin-config.yaml"

    # -- circles written on the box -------------------------------------------------------
    @property
    def scripts(self) -> Path:
        return self.root / "scripts"

    def script(self, script_id: str) -> Path:
        """The box's own copy of a circle (what the admin editor saves)."""
        return self.scripts / f"{script_id}.yaml"

    @property
    def drafts(self) -> Path:
        return self.scripts / ".drafts"

    def draft(self, script_id: str) -> Path:
        return self.drafts / f"{script_id}.yaml"

    def history(self, script_id: str) -> Path:
        return self.scripts / ".history" / script_id

    @property
    def recordings(self) -> Path:
        return self.scripts / "recordings"

    # -- courses (device.course) ----------------------------------------------------------
    @property
    def courses(self) -> Path:
        """The box's own courses (what the admin page saves)."""
        return self.root / "courses"

    def course(self, course_id: str) -> Path:
        return self.courses / f"{course_id}.yaml"

    # -- rendered sounds ------------------------------------------------------------------
    @property
    def cache(self) -> Path:
        return self.root / "cache"

    # -- installed releases (USB bundles) -------------------------------------------------
    @property
    def current(self) -> Path:
        return self.root / "current"

    def release(self, kind: str) -> Path:
        return self.current / kind

    @property
    def installed_content(self) -> Path:
        return self.release("content")

    @property
    def installed_scripts(self) -> Path:
        return self.installed_content / "scripts"

    @property
    def installed_courses(self) -> Path:
        """Courses a content bundle installed."""
        return self.installed_content / "courses"

    @property
    def installed_cache(self) -> Path:
        return self.installed_content / "cache"

    @property
    def installed_voices(self) -> Path:
        """Piper voices a voice bundle installed (audio.voices scans it)."""
        return self.release("voice") / "voices"

    @property
    def installed_language_packs(self) -> Path:
        """Language packs a language_pack bundle installed, one folder per language."""
        return self.release("language_pack")

    def installed_language_pack(self, language: str) -> Path:
        return self.installed_language_packs / language

    # -- the box's own language packs (recorded on the admin page) ----------------------------
    @property
    def language_packs(self) -> Path:
        return self.root / "language-packs"

    def language_pack(self, language: str) -> Path:
        """The box's own pack for one language: pack.yaml and its recordings."""
        return self.language_packs / language

    @property
    def update(self) -> Path:
        return self.root / "update"

    # -- the runtime's state --------------------------------------------------------------
    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def clock(self) -> Path:
        return self.state / "clock.json"

    def last_good(self, script_id: str) -> Path:
        return self.state / "last-good" / f"{script_id}.yaml"

    def course_position(self, course_id: str) -> Path:
        """Where a course stands (device.course_position; written only by the runtime)."""
        return self.state / f"course-{course_id}.json"

    @property
    def usage(self) -> Path:
        return self.root / "usage.sqlite"

    @property
    def training_log(self) -> Path:
        """Rehearsals only, never circles held (device.training_log)."""
        return self.root / "training.sqlite"

    @property
    def circle_lock(self) -> Path:
        return self.root / "circle.lock"

    @property
    def control_socket(self) -> Path:
        return self.root / "run" / "control.sock"

    # -- people and secrets ---------------------------------------------------------------
    @property
    def admin_dir(self) -> Path:
        return self.root / "admin"

    @property
    def admin_password(self) -> Path:
        return self.admin_dir / "password.json"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def setup_code(self) -> Path:
        return self.secrets / "setup-code"

    @property
    def session_key(self) -> Path:
        """Signs the admin page's session cookie (first boot makes it)."""
        return self.secrets / "admin-session-key"

    @property
    def hotspot_passphrase(self) -> Path:
        return self.secrets / "hotspot-passphrase"

    @property
    def firstboot_done(self) -> Path:
        """Written last by first boot: the secrets are complete."""
        return self.secrets / ".done"

    @property
    def network(self) -> Path:
        return self.root / "network"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def box_id(self) -> Path:
        return self.root / "box-id"

    # -- lookups --------------------------------------------------------------------------
    def script_dirs(self) -> tuple[Path, ...]:
        """Where circles are looked up by id, in order: the box's own, then installed ones.
        (The packaged circles come last; `device.script.packaged_scripts_dir`.)"""
        return (self.scripts, self.installed_scripts)

    def course_dirs(self) -> tuple[Path, ...]:
        """Where courses are looked up by id, in order: the box's own, then installed ones.
        (The packaged courses come last; `device.course.packaged_courses_dir`.)"""
        return (self.courses, self.installed_courses)


def data_folder(root: Path | str | DataFolder) -> DataFolder:
    """A DataFolder from a path (or the same one back)."""
    return root if isinstance(root, DataFolder) else DataFolder(Path(root))


__all__ = ["SCRIPT_SUFFIXES", "DataFolder", "data_folder"]
