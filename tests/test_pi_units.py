"""systemd/: every unit verifies with systemd-analyze, and the settings the box relies on are there.

`systemd-analyze verify` checks that ExecStart= programs exist, and /opt/circlebox/venv is not
on this machine. So each test builds a throw-away root: the host's own unit files (for
sysinit.target, sound.target...), our units in /etc/systemd/system, and an empty executable
for every program our units run. `--root` makes systemd-analyze look only there. A
deliberately broken copy of each kind must fail, which proves the check is not a no-op.
systemd-analyze prints "..., ignoring" warnings for bad values with exit code 0, so any output
at all counts as a failure.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS_DIR = REPO / "systemd"
UNITS = sorted(p for p in UNITS_DIR.iterdir() if p.suffix in {".service", ".socket", ".path",
                                                                ".timer", ".target", ".mount"})
VENV_BIN = "/opt/circlebox/venv/bin/circlebox"
HOST_UNIT_DIRS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze missing (tools/install-system-deps.sh installs it)",
)


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(key, value)], keeping repeated keys (DeviceAllow=, SystemCallFilter=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert found, f"[{section}] {key}= missing"
    return found[-1]


def words(unit: dict, section: str, key: str) -> set[str]:
    return {w for v in values(unit, section, key) for w in v.split()}


def exec_paths(unit_path: Path) -> set[str]:
    paths = set()
    for section in parse_unit(unit_path).values():
        for key, value in section:
            if key.startswith("Exec") and value:
                program = value.split()[0].lstrip("-@:+!|")
                if program.startswith("/"):
                    paths.add(program)
    return paths


def instance_name(unit_path: Path) -> str:
    name = unit_path.name
    return name.replace("@.", "@test.") if "@." in name else name


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    host_units = next((d for d in HOST_UNIT_DIRS if d.is_dir()), None)
    if host_units is None:
        pytest.skip("no systemd unit directory on this machine")
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, etc / unit.name)
        for program in exec_paths(unit):
            fake = root / program.lstrip("/")
            fake.parent.mkdir(parents=True, exist_ok=True)
            fake.write_text("#!/bin/sh\nexit 0\n")
            fake.chmod(0o755)
    return root


def verify(root: Path, unit_name: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", unit_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def test_expected_units_exist():
    names = {p.name for p in UNITS}
    assert {"circlebox.service", "circlebox-admin.service", "circlebox-fault.service",
            "circlebox-firstboot.service"} <= names


@needs_systemd
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies_cleanly(fake_root, unit):
    code, output = verify(fake_root, instance_name(unit))
    assert code == 0 and output == "", output


BREAKAGES = [
    ("Type=notify", "Type=notifyy"),  # bad value: "ignoring" warning, exit 0
    ("WatchdogSec=15s", "WatchdogSec=fifteen"),
    ("NoNewPrivileges=yes", "NoNewPrivilegs=yes"),  # misspelt key
    ("DeviceAllow=char-alsa rw", "DeviceAllow=char-alsa rwz"),
    ("SystemCallFilter=@system-service", "SystemCallFilter=@no-such-group"),
    ("[Service]", "[Servic]"),  # no ExecStart: exit code 1
    (f"ExecStart={VENV_BIN} run", "ExecStart=/opt/circlebox/venv/bin/missing run"),
]


@needs_systemd
@pytest.mark.parametrize(("good", "bad"), BREAKAGES, ids=[b for _, b in BREAKAGES])
def test_broken_copy_fails_verification(fake_root, good, bad):
    target = fake_root / "etc/systemd/system/circlebox.service"
    text = target.read_text()
    assert f"\n{good}\n" in text
    target.write_text(text.replace(f"\n{good}\n", f"\n{bad}\n", 1))
    code, output = verify(fake_root, "circlebox.service")
    assert code != 0 or output, "a broken unit passed verification"


@needs_systemd
def test_admin_exposure_score_is_low(fake_root):
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={fake_root}",
         "--threshold=20", "circlebox-admin.service"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr


def test_runtime_unit_settings():
    unit = parse_unit(UNITS_DIR / "circlebox.service")
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    watchdog = one(unit, "Service", "WatchdogSec")
    assert re.fullmatch(r"[1-9]\d*s?", watchdog), watchdog
    assert one(unit, "Service", "Restart") == "on-failure"
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 2
    assert int(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    on_failure = one(unit, "Unit", "OnFailure")
    assert (UNITS_DIR / on_failure).is_file(), f"OnFailure= names a unit not shipped: {on_failure}"
    assert one(unit, "Service", "User") == "circlebox"
    assert {"audio", "gpio"} <= words(unit, "Service", "SupplementaryGroups")
    assert {"char-alsa", "char-gpiochip"} <= {v.split()[0] for v in values(unit, "Service",
                                                                                 "DeviceAllow")}
    assert "/var/lib/circlebox" in words(unit, "Service", "ReadWritePaths")
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ExecStart") == f"{VENV_BIN} run"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_fault_unit_runs_the_fault_signal():
    unit = parse_unit(UNITS_DIR / "circlebox-fault.service")
    assert one(unit, "Service", "ExecStart") == f"{VENV_BIN} fault-signal"
    assert one(unit, "Service", "User") == "circlebox"
    assert {"audio", "gpio"} <= words(unit, "Service", "SupplementaryGroups")
    # It repeats until someone acts, and never hits a start limit.
    assert one(unit, "Service", "Restart") == "always"
    assert one(unit, "Unit", "StartLimitIntervalSec") == "0"
    # It must work when the data partition is the problem.
    assert not values(unit, "Unit", "RequiresMountsFor")
    assert not values(unit, "Service", "ExecStartPre")
    # The runtime and the fault signal never hold the speaker and LED pins at once.
    runtime = parse_unit(UNITS_DIR / "circlebox.service")
    assert "circlebox-fault.service" in words(runtime, "Unit", "Conflicts")


ADMIN_HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
}


def test_admin_unit_hardening():
    unit = parse_unit(UNITS_DIR / "circlebox-admin.service")
    assert one(unit, "Service", "User") == "circlebox-admin"
    for key, expected in ADMIN_HARDENING.items():
        assert one(unit, "Service", key) == expected, key
    assert words(unit, "Service", "RestrictAddressFamilies") == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert values(unit, "Service", "CapabilityBoundingSet") == [""]
    assert "@system-service" in values(unit, "Service", "SystemCallFilter")
    assert words(unit, "Service", "ReadWritePaths") == {"/var/lib/circlebox"}
    assert "/var/lib/circlebox/secrets" in words(unit, "Service", "ReadOnlyPaths")
    assert one(unit, "Service", "IPAddressDeny") == "any"
    assert one(unit, "Service", "ExecStart") == f"{VENV_BIN} admin"


def test_firstboot_unit_runs_once_before_the_others():
    from device.firstboot import Firstboot

    unit = parse_unit(UNITS_DIR / "circlebox-firstboot.service")
    marker = Firstboot(Path("/var/lib/circlebox")).done_marker
    assert one(unit, "Unit", "ConditionPathExists") == f"!{marker}"
    assert one(unit, "Service", "Type") == "oneshot"
    assert {"circlebox.service", "circlebox-admin.service", "NetworkManager.service"} <= words(
        unit, "Unit", "Before")
    assert one(unit, "Service", "ExecStart") == f"{VENV_BIN} firstboot"
    for name in ("circlebox.service", "circlebox-admin.service"):
        other = parse_unit(UNITS_DIR / name)
        assert "circlebox-firstboot.service" in words(other, "Unit", "After"), name


def test_units_use_fixed_paths():
    for unit in UNITS:
        text = unit.read_text()
        assert not re.search(r"@[A-Z_]+@|\$\{?[A-Z_]+\}?/", text), f"{unit.name}: templated path"
        for program in exec_paths(unit):
            assert program in {VENV_BIN, "/usr/bin/mountpoint"} or program.startswith(
                ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/")), f"{unit.name}: {program}"


# --- MemoryDenyWriteExecute for the admin page --------------------------------------------------

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
MDWE_PROBE = """
import ctypes, io, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
import flask, waitress, jinja2, numpy, soundfile
from cryptography.hazmat.primitives.asymmetric import ed25519
ed25519.Ed25519PrivateKey.generate().sign(b"x")
app = flask.Flask("probe")
app.add_url_rule("/", "i", lambda: flask.render_template_string("{{ 1 + 1 }}"))
assert app.test_client().get("/").data == b"2"
buf = io.BytesIO()
soundfile.write(buf, numpy.zeros(160), 16000, format="WAV")  # an upload decoded in memory
buf.seek(0)
soundfile.read(buf)
"""


def test_admin_memory_deny_write_execute_matches_what_python_needs():
    """The admin unit may set MemoryDenyWriteExecute=yes only if its work runs under it.

    PR_SET_MDWE (Linux 6.3+) is the kernel's per-process form of the same rule."""
    probe = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True,
                           timeout=120)
    if probe.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE")
    unit = parse_unit(UNITS_DIR / "circlebox-admin.service")
    mdwe = values(unit, "Service", "MemoryDenyWriteExecute")
    if probe.returncode == 0:
        return  # either setting is safe
    assert "write+execute" in probe.stderr or "MemoryError" in probe.stderr, probe.stderr
    assert mdwe in ([], ["no"]), "MemoryDenyWriteExecute=yes would break the admin page"


def test_ctypes_is_loadable():
    # The probe above relies on ctypes reaching libc's prctl.
    assert ctypes.CDLL(None).prctl


def test_seal_unit_waits_for_the_first_boot_work():
    unit = parse_unit(UNITS_DIR / "circlebox-seal.service")
    assert one(unit, "Unit", "ConditionKernelCommandLine") == "!overlayroot"
    assert one(unit, "Unit", "ConditionPathExists") == "/var/lib/circlebox/secrets/.done"
    assert "circlebox-firstboot.service" in words(unit, "Unit", "After")
    assert one(unit, "Service", "ExecStart") == f"{VENV_BIN} firstboot --seal-root"
    assert words(unit, "Service", "ReadWritePaths") == {"/boot/firmware"}


# --- privilege separation (issue 12): every unit sandboxed, root ones most of all -------------

SERVICES = [u for u in UNITS if u.suffix == ".service"]
MAX_EXPOSURE = 5.0
ROOT_UNITS = ["circlebox-update-inbox.service", "circlebox-update-finish.service", "circlebox-usb-import@.service"]
UPDATER_FOLDERS = {"/var/lib/circlebox/update", "/var/lib/circlebox/releases", "/var/lib/circlebox/current"}


def exposure(root: Path, unit_name: str) -> float:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", "--threshold=100", unit_name],
        capture_output=True, text=True, timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr
    return float(found.group(1))


@needs_systemd
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_exposure_is_at_most_5(fake_root, unit):
    """The review measured 9.0-9.2 (UNSAFE) for the root update units."""
    score = exposure(fake_root, instance_name(unit))
    assert score <= MAX_EXPOSURE, f"{unit.name}: exposure {score}"


@needs_systemd
def test_exposure_check_is_not_a_no_op(fake_root):
    """The unsandboxed update unit the review measured fails the same check."""
    target = fake_root / "etc/systemd/system/circlebox-update-inbox.service"
    kept = ("[", "Description", "Type", "User", "ExecStart", "Environment", "TimeoutStartSec")
    target.write_text("\n".join(line for line in target.read_text().splitlines() if line.startswith(kept)) + "\n")
    assert exposure(fake_root, "circlebox-update-inbox.service") > MAX_EXPOSURE


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_every_service_has_a_memory_limit(unit):
    limit = one(parse_unit(unit), "Service", "MemoryMax")
    assert re.fullmatch(r"[1-9]\d*[KMG]", limit), limit


@pytest.mark.parametrize("name", ROOT_UNITS)
def test_root_units_are_sandboxed(name):
    unit = parse_unit(UNITS_DIR / name)
    for key, expected in {**ADMIN_HARDENING, "PrivateNetwork": "yes", "PrivateMounts": "yes",
                          "ProtectProc": "invisible", "IPAddressDeny": "any"}.items():
        assert one(unit, "Service", key) == expected, key
    assert words(unit, "Service", "RestrictAddressFamilies") == {"AF_UNIX"}
    assert values(unit, "Service", "SystemCallFilter")[0].startswith("@system-service")
    caps = words(unit, "Service", "CapabilityBoundingSet")
    assert caps and caps <= {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE", "CAP_SETUID",
                             "CAP_SETGID", "CAP_CHOWN"}, caps
    if "usb-import" not in name:  # only the stick importer remounts and hands work to a user
        assert caps <= {"CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE"}, caps
    writable = words(unit, "Service", "ReadWritePaths")
    extra = {"/var/lib/circlebox/update-inbox"} if "inbox" in name else set()
    if "usb-import" in name:  # the usage export's child writes usage.sqlite (and its -wal) there
        extra = {"/var/lib/circlebox"}
        kept = {p.lstrip("-") for p in words(unit, "Service", "ReadOnlyPaths")}
        assert {f"/var/lib/circlebox/{p}" for p in ("secrets", "admin", "admin-config.yaml", "scripts", "courses",
                                                     "cache", "state", "box-id")} <= kept, kept
    assert writable == UPDATER_FOLDERS | extra, writable


def test_runtime_has_no_network():
    unit = parse_unit(UNITS_DIR / "circlebox.service")
    assert words(unit, "Service", "RestrictAddressFamilies") == {"AF_UNIX"}
    assert one(unit, "Service", "IPAddressDeny") == "any"


def test_updater_folders_are_root_owned_in_the_data_layout():
    """tmpfiles makes the updater's folders root's and the data folder sticky (docs/security.md)."""
    lines = (REPO / "firmware_config/tmpfiles.d/circlebox.conf").read_text().splitlines()
    entries = {f[1]: f for f in (line.split() for line in lines) if f and f[0] == "d"}
    assert entries["/var/lib/circlebox"][2:5] == ["3775", "root", "circlebox"]
    for folder in UPDATER_FOLDERS:
        assert entries[folder][2:5] == ["0755", "root", "root"], folder
