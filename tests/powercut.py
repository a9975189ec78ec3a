"""Power-cut harness: SIGKILL the real device runtime, `circlebox render` and an atomic settings
writer at random moments, restart, and check what a power cut may never do.

Used by tests/test_powercut.py (short form in CI, long form with -m slow) and runnable alone:

    .venv/bin/python tests/powercut.py --kills 300 --writer-kills 300 --render-kills 30 \
        --admin-kills 100 --bundle-kills 300

(`--kills 0 --writer-kills 0 --render-kills 0` runs only the admin and bundle halves.)

After every kill of `circlebox run`:
- the runtime restarts into a usable state: the control socket answers, the state is idle;
- no file in the data dir is half-written: every JSON/YAML parses, every WAV header reads,
  every SQLite database passes `PRAGMA integrity_check`;
- every session whose `session_finished` the runtime logged before the kill is in the usage
  store, ended (and completed, when it logged completed=True).

After every kill of `circlebox admin` (driven over real HTTP while it saves a circle through its
editor, renders it on its thread and switches, or saves settings): the same file checks, every
script loads, the live circle plays (its rendered set matches it completely), and no save the
page had confirmed is lost; the next start serves pages. After every kill of
`circlebox bundle apply`: `current/app` is a complete release; the re-run converges.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ when run as a script
from bench.service import PYTHON, ROOT, RuntimeProcess, box_env, check_files, prepare_data, wait_ready

ACTIONS = ["next"] * 6 + ["skip"] * 6 + ["stop", "repeat", "pause", "help", "volume_up", "previous"]


def store_path(data: Path) -> Path:
    from device.usage import store_path as real

    return real(data)


@dataclass
class Report:
    kills: int = 0
    writer_kills: int = 0
    finished_seen: int = 0
    completed_seen: int = 0
    render_kills: int = 0
    admin_kills: int = 0
    bundle_kills: int = 0
    bundle_versions: int = 0  # bundles installed (or refused) to the end after their kills
    saves_confirmed: int = 0  # admin saves (circle done / settings 302) confirmed before a kill
    leftover_tmp: int = 0  # temp files a killed atomic write left behind (never read; see docs/stress.md)
    faults: list[str] = field(default_factory=list)

    def fault(self, text: str) -> None:
        self.faults.append(text)


def stored_sessions(data: Path) -> list[dict]:
    from device.usage import UsageStore

    store = UsageStore(store_path(data))
    try:
        return store.sessions()
    finally:
        store.close()


def drive_until_kill(proc: RuntimeProcess, sock: Path, rng: random.Random, kill_after: float,
                     on_finish: bool = False) -> None:
    """Random presses, fast, until the kill moment (or, `on_finish`, the moment a circle ends)."""
    from device.control import BoxNotRunning, ControlClient

    client = ControlClient(sock, timeout=2.0)
    end = time.monotonic() + kill_after
    if on_finish:  # the worst moment for the usage store: the instant a circle is logged as ended
        end += 10.0
        before = len(proc.finished)
        while time.monotonic() < end and len(proc.finished) == before:
            with contextlib.suppress(BoxNotRunning, ValueError):
                client.dispatch("skip", source="powercut")
        return
    while time.monotonic() < end:
        action = rng.choice(ACTIONS)
        with contextlib.suppress(BoxNotRunning, ValueError):
            client.dispatch(action, source="powercut")
        time.sleep(min(max(0.0, end - time.monotonic()), rng.choice([0.0, 0.005, 0.02, 0.05, 0.1])))


def runtime_kills(data: Path, kills: int, seed: int = 7, log_dir: Path | None = None,
                  report: Report | None = None, max_kill_after: float = 1.5) -> Report:
    from device.control import socket_path

    report = report or Report()
    rng = random.Random(seed)
    log_dir = log_dir or data.parent / "powercut-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(data)
    finished_total = 0
    completed_total = 0
    for n in range(kills):
        proc = RuntimeProcess(data, log_dir, n)
        status = wait_ready(sock, proc.proc)
        if status is None:
            proc.proc.kill()
            proc.proc.wait()
            proc.save_log()
            report.fault(f"kill {n}: runtime did not come back (log {proc.log})")
            break
        if status.get("state") != "idle":
            report.fault(f"kill {n}: restarted into state {status.get('state')!r}, not idle")
        if status.get("faults"):
            report.fault(f"kill {n}: restarted with faults {status['faults']}")
        drive_until_kill(proc, sock, rng, rng.uniform(0.0, max_kill_after), on_finish=n % 3 == 2)
        seen = proc.kill()
        report.kills += 1
        finished_total += len(seen)
        completed_total += sum(seen)
        problems = check_files(data)
        rows = stored_sessions(data)
        ended = [r for r in rows if r["ended_at"] is not None]
        completed = [r for r in rows if r["completed"]]
        if len(ended) < finished_total:
            problems.append(f"{finished_total} sessions logged session_finished, "
                            f"only {len(ended)} are ended in the store")
        if len(completed) < completed_total:
            problems.append(f"{completed_total} sessions logged completed, "
                            f"only {len(completed)} are completed in the store")
        if problems:
            proc.save_log()
            report.fault(f"kill {n}: " + "; ".join(problems) + f" (log {proc.log})")
            # count from what the store has now, so one fault is reported once, not at every later kill
            finished_total, completed_total = len(ended), len(completed)
    report.finished_seen += finished_total
    report.completed_seen += completed_total
    # the last restart: the box must come up once more after the final kill
    proc = RuntimeProcess(data, log_dir, kills)
    status = wait_ready(sock, proc.proc)
    if status is None or status.get("state") != "idle":
        report.fault(f"final restart: {status!r}")
    proc.kill()
    return report


# -- a circle saved and rendered, killed mid-render -------------------------------------------------

SMALL_CIRCLE = """script: powercut-circle
version: {version}
language: en_US
voice: en_US-joe-medium
steps:
  - id: hello
    say: "Hello and welcome, group {salt}."
  - id: share
    kind: round
    prompt: "Share one thing about your week, number {salt}."
  - id: close
    say: ["Thank you, group {salt}.", {{pause: 1}}, "Goodbye."]
    then: continue
"""


def render_kills(data: Path, kills: int, seed: int = 13, report: Report | None = None) -> Report:
    """Save a new version of a small circle (atomically, as the admin page does) and kill
    `circlebox render` at a random moment, `kills` times; then render once to the end and start
    the runtime on it. After every kill every cache file is whole; at the end the box plays the
    last saved version."""
    from device.control import socket_path
    from device.fsutil import atomic_write_text

    report = report or Report()
    rng = random.Random(seed)
    script = data / "scripts" / "powercut-circle.yaml"
    cmd = [str(PYTHON), "-m", "device.cli", "render", "powercut-circle"]
    for n in range(kills):
        atomic_write_text(script, SMALL_CIRCLE.format(version=n + 1, salt=f"{seed}-{n}"))
        child = subprocess.Popen(cmd, cwd=ROOT, env=box_env(data), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 6.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        report.render_kills += 1
        problems = check_files(data)
        if problems:
            report.fault(f"render kill {n}: " + "; ".join(problems))
    done = subprocess.run(cmd, cwd=ROOT, env=box_env(data), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        report.fault(f"render after the kills failed: {done.stderr.strip()[-500:]}")
        return report
    run = subprocess.Popen([str(PYTHON), "-m", "device.cli", "run"], cwd=ROOT,
                           env=box_env(data, CIRCLEBOX_SESSION__SCRIPT="powercut-circle"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = wait_ready(socket_path(data), run)
        if status is None or status.get("state") != "idle" or status.get("faults"):
            report.fault(f"runtime on the rendered circle: {status!r}")
        elif status.get("script") != "powercut-circle" or status.get("script_version") != kills:
            report.fault(f"runtime plays {status.get('script')} v{status.get('script_version')}, not v{kills}")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    return report


# -- the settings file, written atomically while being killed --------------------------------------

WRITER = r"""
import sys
from pathlib import Path
from device.fsutil import atomic_write_text
path, child = Path(sys.argv[1]), sys.argv[2]
n = 0
print("ready", flush=True)
while True:
    n += 1
    v = f"{child}.{n}"
    atomic_write_text(path, f"# version {v}\nbox:\n  name: box-{v}\n" + "#" * 200_000 + f"\n# end {v}\n")
"""


def settings_version(text: str) -> str | None:
    """The version of a whole settings file as the writer writes it (head and tail agree), else None."""
    m = re.match(r"# version ([\d.]+)\nbox:\n  name: box-([\d.]+)\n#{200000}\n# end ([\d.]+)\n\Z", text)
    return m.group(1) if m and m.group(1) == m.group(2) == m.group(3) else None


def valid_settings(text: str) -> bool:
    return settings_version(text) is not None


def writer_kills(directory: Path, kills: int, seed: int = 11, report: Report | None = None) -> Report:
    """A child writes the admin settings file in a loop with atomic_write_text; SIGKILL it at random.

    After every kill the file is a whole version (old or new), never partial; the config loader
    reads it. The previous content is always a valid version too, so 'old or new' is checked.
    """
    from device.config import ADMIN_CONFIG_NAME

    report = report or Report()
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ADMIN_CONFIG_NAME
    old: str | None = None  # the version on disk before this child started
    for n in range(kills):
        child = subprocess.Popen([str(PYTHON), "-c", WRITER, str(path), str(n)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()  # "ready": imports done, the loop is starting
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        report.writer_kills += 1
        if not path.exists():
            if old is not None:
                report.fault(f"writer kill {n}: the settings file disappeared")
            continue  # killed before the first rename: nothing was ever there
        text = path.read_text(encoding="utf-8")
        version = settings_version(text)
        if version is None:
            report.fault(f"writer kill {n}: settings file is partial ({len(text)} bytes)")
            continue
        if version != old and not version.startswith(f"{n}."):
            report.fault(f"writer kill {n}: version {version} is neither the old ({old}) nor one this child wrote")
        old = version
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            report.fault(f"writer kill {n}: does not parse: {exc}")
    leftovers = list(directory.glob(f".{ADMIN_CONFIG_NAME}.*.tmp"))
    report.leftover_tmp = len(leftovers)
    # the box comes back later (a reboot takes longer than STALE_TMP_S here): the next write clears them
    from device.fsutil import STALE_TMP_S, atomic_write_text

    for stale in leftovers:
        os.utime(stale, (time.time() - STALE_TMP_S - 1, time.time() - STALE_TMP_S - 1))
    if path.exists():
        atomic_write_text(path, path.read_text(encoding="utf-8"))
        remaining = list(directory.glob(f".{ADMIN_CONFIG_NAME}.*.tmp"))
        if remaining:
            report.fault(f"{len(remaining)} temp files from killed writes are still there after the next write")
    return report


# -- the admin service, killed while it saves a circle (render + switch) or settings ---------------

ADMIN_CIRCLE = "powercut-circle"
PASSWORD = "blue river morning tea"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Http:
    """A tiny stdlib browser: a cookie jar, no redirects followed, the CSRF token from a form."""

    def __init__(self, base: str) -> None:
        import http.cookiejar
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # a 302 is an answer, not a hop
                return None

        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, fields: dict | list | None = None, timeout: float = 10.0) -> tuple[int, str]:
        import urllib.error
        import urllib.parse

        body = urllib.parse.urlencode(fields).encode() if fields is not None else None
        try:
            with self.opener.open(self.base + path, data=body, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def token(self, path: str) -> str:
        status, text = self.request(path)
        m = CSRF.search(text)
        if not m:
            raise RuntimeError(f"GET {path}: {status}, no CSRF token")
        return m.group(1)

    def post(self, path: str, fields: dict | list, form_path: str | None = None) -> tuple[int, str]:
        items = list(fields.items()) if isinstance(fields, dict) else list(fields)
        return self.request(path, [("csrf_token", self.token(form_path or path)), *items])


class AdminProcess:
    """`circlebox admin` (waitress) as a child on a free port of 127.0.0.1."""

    def __init__(self, data: Path, log_dir: Path, n: int) -> None:
        self.port = free_port()
        self.log = log_dir / f"admin-{n:04d}.log"
        self._out = open(self.log, "w", encoding="utf-8")  # noqa: SIM115 (closed in kill)
        self.proc = subprocess.Popen(
            [str(PYTHON), "-m", "device.cli", "admin", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=box_env(data, PYTHONUNBUFFERED="1"), stdout=self._out, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until the login page answers 200 (pages are served)."""
        import urllib.error
        import urllib.request

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(self.base + "/login", timeout=2) as r:
                if r.status == 200:
                    return True
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._out.close()


def circle_form(version_salt: str, n_hello: int) -> dict[str, str]:
    """The editor's form for ADMIN_CIRCLE (as a browser posts it): three steps, one text changed."""
    form = {"op": "save", "title": "Power-cut circle", "language": "en_US", "voice": "en_US-joe-medium",
            "nsteps": "3"}
    steps = [("hello", "say", f"Hello and welcome, group {version_salt}.\n[pause 1]\nLet us begin."),
             ("share", "round", "Share one thing about your week."),
             ("close", "say", "Thank you. Goodbye.")]
    for i, (sid, kind, text) in enumerate(steps):
        form.update({f"s{i}_orig": sid, f"s{i}_id": sid, f"s{i}_kind": kind, f"s{i}_text": text,
                     f"s{i}_then": "wait_for_next" if i < 2 else "continue", f"s{i}_between": "soft_bell"})
    return form


def _post_into(answer: list, http: Http, path: str, fields: dict) -> None:
    try:
        answer.append(http.request(path, fields)[0])
    except OSError:  # the connection died with the service
        answer.append(None)


def admin_login(http: Http, data: Path) -> None:
    """Set the password with the setup code (first start), else log in."""
    status, _ = http.request("/setup")
    code_file = data / "secrets" / "setup-code"
    if status == 200 and code_file.exists():
        code = code_file.read_text(encoding="utf-8").strip()
        status, text = http.post("/setup", {"code": code, "password": PASSWORD, "confirm": PASSWORD})
        if status == 302:
            return
    status, text = http.post("/login", {"password": PASSWORD})
    if status != 302:
        raise RuntimeError(f"login: {status} {text[:300]}")


def check_admin_data(data: Path, circle_ok: list[str], site_ok: list[str], restarted: bool = False) -> list[str]:
    """After a kill: files whole, scripts valid, the box can play the circle as the runtime
    loads it (`device.content.load_configured_circle`: the live copy with its rendered set, or
    the save the cut interrupted between its new set and its switch), and after the admin's
    restart (`restarted`) the live copy itself plays (the restart finished any such switch);
    nothing the admin had confirmed as saved is lost: `circle_ok` (and `site_ok`) are the last
    confirmed save followed by those posted after it, unconfirmed (a save may be done on disk a
    moment before its answer arrives); empty while nothing was confirmed."""
    from device.content import ContentError, load_circle, load_configured_circle
    from device.script import ScriptError, load_script

    problems = check_files(data)
    for path in sorted((data / "scripts").rglob("*.yaml")):
        try:
            load_script(path)
        except ScriptError as exc:
            problems.append(f"{path}: {exc}")
    live = data / "scripts" / f"{ADMIN_CIRCLE}.yaml"
    if live.exists():
        try:
            if restarted:
                load_circle(load_script(live), data / "cache")
            else:
                load_configured_circle(ADMIN_CIRCLE, data)
        except (ScriptError, ContentError) as exc:
            problems.append(f"the box cannot play the circle{' after the restart' * restarted}: {exc}")
        text = live.read_text(encoding="utf-8")
        if circle_ok and not any(f"group {salt}." in text for salt in circle_ok):
            problems.append(f"the saved circle (group {circle_ok[0]}) is not live, nor a later one")
    elif circle_ok:
        problems.append("the saved circle is gone")
    layer = data / "admin-config.yaml"
    if site_ok:
        text = layer.read_text(encoding="utf-8") if layer.exists() else ""
        box = (yaml.safe_load(text) or {}).get("box", {}) if text else {}
        if box.get("site") not in site_ok:
            problems.append(f"saved settings lost: site is {box.get('site')!r}, "
                            f"the admin had saved {site_ok[0]!r}")
    return problems


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def aimed_at_switch(set_file: Path, before: tuple[int, int] | None, admin: AdminProcess,
                    timeout: float) -> None:
    """SIGKILL the admin the moment (within ~1 ms) the circle's rendered set is replaced."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and admin.proc.poll() is None:
        if _identity(set_file) != before:
            admin.proc.send_signal(signal.SIGKILL)
            return
        time.sleep(0.0005)


def admin_kills(data: Path, kills: int, seed: int = 17, report: Report | None = None,
                log_dir: Path | None = None, max_kill_after: float = 4.0) -> Report:
    """Start `circlebox admin`, log in over HTTP, save the circle through the editor (every
    other round) or the box settings, and SIGKILL the service at a random moment 0 to
    `max_kill_after` s after the save was posted (the render thread, the switch, the settings
    write). After every kill: check_admin_data; then the next start must serve pages."""
    report = report or Report()
    rng = random.Random(seed)
    log_dir = log_dir or data.parent / "powercut-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    circle_ok: list[str] = []  # [salt of the last save reported done, salts posted since]
    site_ok: list[str] = []  # [site of the last settings save answered "Saved", sites posted since]
    for n in range(kills + 1):
        admin = AdminProcess(data, log_dir, n)
        if not admin.wait_ready():
            admin.kill()
            report.fault(f"admin kill {n}: the admin service did not come back (log {admin.log})")
            break
        http = Http(admin.base)
        try:
            admin_login(http, data)
            status, _ = http.request(f"/circles/{ADMIN_CIRCLE}/edit" if circle_ok else "/circles/")
            if status != 200:
                report.fault(f"admin kill {n}: a page answered {status} after the restart")
            problems = check_admin_data(data, circle_ok, site_ok, restarted=True)
            if problems:
                report.fault(f"admin restart {n}: " + "; ".join(problems) + f" (log {admin.log})")
        except (RuntimeError, OSError) as exc:
            admin.kill()
            report.fault(f"admin kill {n}: {exc} (log {admin.log})")
            break
        if n == kills:  # the last start: only that it serves pages
            admin.kill()
            break
        salt = f"{seed}-{n}"
        started = time.monotonic()
        kill_after = rng.uniform(0.0, max_kill_after)
        poster = None
        if n % 2 == 0 or not circle_ok:
            set_file = data / "cache" / "sets" / f"{ADMIN_CIRCLE}.json"
            set_before = _identity(set_file)
            status, text = http.post(f"/circles/{ADMIN_CIRCLE}/edit", circle_form(salt, n),
                                     form_path=f"/circles/{ADMIN_CIRCLE}/edit" if circle_ok else "/circles/new")
            if circle_ok:
                circle_ok.append(salt)
            job = re.search(r"/circles/jobs/([0-9a-f]+)", text) if status == 302 else None
            if job is None:
                report.fault(f"admin kill {n}: the save was not accepted ({status}: {text[:200]})")
            if n == 0:  # the first save is let through: from then on there is a live circle to lose
                kill_after = 60.0
            elif n % 6 == 4 and job:
                # one circle save in three: the kill aims at the worst moment, the switch: the
                # instant the new rendered set replaces the old one, before the live script does
                aimed_at_switch(set_file, set_before, admin, timeout=60.0)
                kill_after = 0.0
            while job and time.monotonic() - started < kill_after:
                _, body = http.request(f"/circles/jobs/{job.group(1)}.json")
                with contextlib.suppress(ValueError):
                    if json.loads(body).get("state") == "done":
                        circle_ok[:] = [salt]  # confirmed: must never be lost now
                        report.saves_confirmed += 1
                        break
                time.sleep(0.02)
        else:
            # posted on a thread, so the kill can land inside the request (the write itself)
            kill_after = rng.uniform(0.0, 0.4)
            site = (f"room {salt} " + "é" * rng.randint(0, 200))[:120].strip()
            answer: list[int] = []
            fields = {"section": "box", "box_name": "powercut-box", "box_site": site, "volume": "60",
                      "volume_cap": "90", "csrf_token": http.token("/settings/")}
            if site_ok:
                site_ok.append(site)
            poster = threading.Thread(target=_post_into, args=(answer, http, "/settings/", fields), daemon=True)
            started = time.monotonic()
            poster.start()
        time.sleep(max(0.0, kill_after - (time.monotonic() - started)))
        admin.kill()
        if poster is not None:
            poster.join(timeout=15)
            if answer == [302]:  # the page said "Saved" before the cut: it must be on disk
                site_ok[:] = [site]
                report.saves_confirmed += 1
        report.admin_kills += 1
        problems = check_admin_data(data, circle_ok, site_ok)
        if problems:
            report.fault(f"admin kill {n}: " + "; ".join(problems) + f" (log {admin.log})")
    return report


# -- a real bundle install, killed at random wall-clock moments -----------------------------------


def bundle_kills(directory: Path, kills: int, seed: int = 19, report: Report | None = None,
                 max_kill_after: float = 1.0) -> Report:
    """`circlebox bundle apply FILE --root DIR --pubkey KEY` (a real subprocess) SIGKILLed at a
    random moment 0.05 to `max_kill_after` s after it starts (anywhere: imports, copy, verify,
    extract, fsync, self-test, switch, health, commit, prune; not only at the named crash points
    of tests/test_update_crash.py), one to three times per bundle, then run to the end.

    After every kill: `current/app` is a complete release (every file with its manifest hash),
    the previous version or the new one. After the final run: the box converged (installed,
    `current` and the journal agree; nothing staged or half-made is left). One bundle in four
    fails its health check: the run must roll back and refuse that version.
    """
    import shutil

    from cryptography.hazmat.primitives import serialization
    from test_update_helpers import Keys, good_bundle, make_box

    from device.update.installer import apply_bundle
    from device.update.release import current_release, release_problems, releases_dir, staging_dir
    from device.update.state import load_state

    report = report or Report()
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    keys = Keys()
    pub = directory / "trusted.pub"
    pub.write_bytes(keys.public.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    root = directory / "root"
    self_test = b"#!/bin/sh\nexit 0\n"
    if not apply_bundle(good_bundle(directory, keys, 1, files={"app/main.py": b"v1\n", "hooks/self-test": self_test}),
                        make_box(root, keys)).ok:
        report.fault("bundle: the first install failed")
        return report

    def apply(bundle: Path, healthy: bool) -> subprocess.Popen:
        return subprocess.Popen(
            [str(PYTHON), "-m", "device.cli", "bundle", "apply", str(bundle), "--root", str(root),
             "--pubkey", str(pub), "--health-cmd", "true" if healthy else "false",
             "--ready-timeout", "0", "--stay-up", "0"],
            cwd=ROOT, env=box_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    installed, version, n = 1, 1, 0
    rejected: list[int] = []
    while report.bundle_kills < kills:
        version += 1
        healthy = version % 4 != 0
        files = {"app/main.py": f"v{version}\n".encode(), "app/model.bin": rng.randbytes(rng.randint(1, 6) << 20),
                 "hooks/self-test": self_test}
        bundle = good_bundle(directory, keys, version, files=files)
        for _ in range(rng.randint(1, 3)):
            child = apply(bundle, healthy)
            time.sleep(rng.uniform(0.05, max_kill_after))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                report.bundle_kills += 1
            child.communicate(timeout=60)
            n += 1
            release = current_release(root, "app")
            if release not in (f"app-{installed}", f"app-{version}"):
                report.fault(f"bundle kill {n}: current/app is {release!r}, not app-{installed} or app-{version}")
            elif problems := release_problems(root / "current" / "app"):
                report.fault(f"bundle kill {n}: {release} is not complete: {'; '.join(problems[:3])}")
        child = apply(bundle, healthy)
        out, _ = child.communicate(timeout=120)
        if healthy:
            installed = version
        else:
            rejected.append(version)
        state = load_state(root)
        got = state.installed.get("app")
        left = [p.name for p in (staging_dir(root), root / "update" / "incoming") if p.exists()]
        if (got is None or got.version != installed or current_release(root, "app") != f"app-{installed}"
                or state.trial is not None or state.pending or state.rejected.get("app", []) != rejected
                or release_problems(root / "current" / "app") or left):
            report.fault(f"bundle v{version}: did not converge after the kills: installed "
                         f"{got and got.version}, current {current_release(root, 'app')}, trial {state.trial}, "
                         f"pending {state.pending}, rejected {state.rejected}, left {left}; {out.strip()[-300:]}")
            break
        extra = {p.name for p in releases_dir(root).iterdir()} - {f"app-{v}" for v in range(1, version + 1)}
        if extra:
            report.fault(f"bundle v{version}: releases nothing refers to are left: {sorted(extra)}")
        for src in directory.glob(f"src-app-{version}-*"):  # the long form makes hundreds
            shutil.rmtree(src, ignore_errors=True)
        bundle.unlink()
    report.bundle_versions = version - 1
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=300)
    p.add_argument("--writer-kills", type=int, default=300)
    p.add_argument("--render-kills", type=int, default=30)
    p.add_argument("--admin-kills", type=int, default=100)
    p.add_argument("--bundle-kills", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rendered", type=Path, default=ROOT / ".pytest_cache" / "d" / "rendered-default",
                   help="a data dir with the default circle rendered (pytest makes one)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(Path(tmp) / "data", args.rendered)
        t0 = time.monotonic()
        report = runtime_kills(data, args.kills, seed=args.seed)
        writer_kills(Path(tmp) / "settings", args.writer_kills, seed=args.seed + 1, report=report)
        if args.render_kills:
            render_kills(data, args.render_kills, seed=args.seed + 2, report=report)
        if args.admin_kills:
            admin_kills(prepare_data(Path(tmp) / "admin-data", args.rendered), args.admin_kills,
                        seed=args.seed + 3, report=report)
        if args.bundle_kills:
            bundle_kills(Path(tmp) / "bundles", args.bundle_kills, seed=args.seed + 4, report=report)
        print(json.dumps({"runtime_kills": report.kills, "writer_kills": report.writer_kills,
                          "render_kills": report.render_kills, "admin_kills": report.admin_kills,
                          "admin_saves_confirmed": report.saves_confirmed,
                          "bundle_kills": report.bundle_kills, "bundle_versions": report.bundle_versions,
                          "sessions_finished_before_kills": report.finished_seen,
                          "completed_before_kills": report.completed_seen,
                          "sessions_in_store": len(stored_sessions(data)),
                          "leftover_tmp_files": report.leftover_tmp,
                          "faults": report.faults, "seconds": round(time.monotonic() - t0)}, indent=2))
    return 1 if report.faults else 0


if __name__ == "__main__":
    raise SystemExit(main())
