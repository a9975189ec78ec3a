"""First boot: make this box's own secrets, once.

The image carries no secrets (every box made from it would share them). On the first boot
circlebox-firstboot.service runs `circlebox firstboot`, as root, which creates on the data
partition:

    <data>/box-id                     this box's name, e.g. 7K3MQ9 (not secret, 0644)
    <data>/secrets/setup-code         6 digits the technician types on the admin page (0600)
    <data>/secrets/admin-session-key  32 random bytes, hex, signing admin sessions (0600)
    <data>/secrets/hotspot-passphrase the Wi-Fi hotspot's WPA2 passphrase (0600, root)
    <data>/secrets/.done              marker: the unit's ConditionPathExists skips later boots
    <data>/network/circlebox-hotspot.nmconnection   the hotspot profile with the passphrase

Every file is written atomically and only when missing, so a second run (or a run after a
power cut halfway through) changes nothing that exists and completes what is missing.

`circlebox firstboot --seal-root` (circlebox-seal.service) then makes the root file system
read-only from the next boot on, by adding `overlayroot=tmpfs:recurse=0` to cmdline.txt. It
is not read-only from the start because Raspberry Pi OS's own first boots (partition ids,
Imager's user and Wi-Fi country, SSH host keys) must write to /etc and keep what they wrote.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from device.datafolder import DataFolder
from device.fsutil import atomic_write_text

# The hotspot profile template installed by the image (firmware_config/network/).
HOTSPOT_TEMPLATE = Path("/etc/circlebox/circlebox-hotspot.nmconnection.in")
HOTSPOT_PROFILE = "circlebox-hotspot.nmconnection"
# Read aloud and typed on a phone: no 0/O, 1/I/L, 5/S, 2/Z, 8/B, U/V.
UNAMBIGUOUS = "ACDEFGHJKMNPQRTWXY34679"
PASSPHRASE_LOWER = "acdefghjkmnpqrtwxy34679"

# Who owns each secret (user, group). The admin page reads the setup code and session key;
# only root (NetworkManager) needs the hotspot passphrase.
DEFAULT_OWNERS: Mapping[str, tuple[str, str]] = {
    "secrets": ("root", "circlebox-admin"),
    "setup-code": ("circlebox-admin", "circlebox-admin"),
    "admin-session-key": ("circlebox-admin", "circlebox-admin"),
    "hotspot-passphrase": ("root", "root"),
    ".done": ("root", "root"),
    "network": ("root", "root"),
    HOTSPOT_PROFILE: ("root", "root"),
}


CMDLINE = Path("/boot/firmware/cmdline.txt")
OVERLAY_PARAM = "overlayroot=tmpfs:recurse=0"


class FirstbootError(RuntimeError):
    pass


def seal_root(cmdline: Path = CMDLINE) -> bool:
    """Add OVERLAY_PARAM to the kernel command line unless an overlayroot= is there already
    (including a technician's `overlayroot=disabled`). True if the file was changed."""
    try:
        text = cmdline.read_text(encoding="utf-8")
    except OSError as exc:
        raise FirstbootError(f"{cmdline}: {exc.strerror}") from exc
    words = text.split()
    if not words:
        raise FirstbootError(f"{cmdline} is empty: refusing to write a kernel command line")
    if any(word.startswith("overlayroot=") for word in words):
        return False
    # cmdline.txt is one line. The boot partition is FAT: no chmod, just write, fsync, rename.
    fd, tmp = tempfile.mkstemp(prefix=".cmdline.", dir=cmdline.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(" ".join([*words, OVERLAY_PARAM]) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, cmdline)
        # The rename and FAT's allocation table live in the folder, not the file: without this a
        # power cut soon after first boot left a broken cmdline.txt (found in QEMU).
        os.sync()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def new_box_id() -> str:
    return "".join(secrets.choice(UNAMBIGUOUS) for _ in range(6))


def new_setup_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def new_session_key() -> str:
    return secrets.token_bytes(32).hex()


def new_hotspot_passphrase() -> str:
    """12 random characters from 23 (about 54 bits) in three groups: 'kq7m-ty3d-pagh'."""
    chars = "".join(secrets.choice(PASSPHRASE_LOWER) for _ in range(12))
    return "-".join(chars[i : i + 4] for i in range(0, 12, 4))


def hotspot_ssid(box_id: str) -> str:
    return f"Circlebox-{box_id}"


def render_hotspot_profile(template: str, box_id: str, passphrase: str) -> str:
    values = {
        "@SSID@": hotspot_ssid(box_id),
        "@PASSPHRASE@": passphrase,
        "@UUID@": str(uuid.uuid5(uuid.NAMESPACE_URL, f"circlebox:hotspot:{box_id}")),
    }
    text = template
    for key, value in values.items():
        text = text.replace(key, value)
    if "@" in "".join(line for line in text.splitlines() if not line.startswith("#")):
        raise FirstbootError("hotspot template has a placeholder firstboot does not know")
    return text


@dataclass
class Firstboot:
    data_dir: Path
    template: Path = HOTSPOT_TEMPLATE
    owners: Mapping[str, tuple[str, str]] | None = field(default_factory=lambda: DEFAULT_OWNERS)
    changed: list[str] = field(default_factory=list)

    @property
    def data(self) -> DataFolder:
        return DataFolder(self.data_dir)

    @property
    def secrets_dir(self) -> Path:
        return self.data.secrets

    @property
    def network_dir(self) -> Path:
        return self.data.network

    @property
    def done_marker(self) -> Path:
        return self.data.firstboot_done

    def _own(self, path: Path, key: str) -> None:
        if self.owners is None or key not in self.owners:
            return
        user, group = self.owners[key]
        try:
            uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError as exc:
            raise FirstbootError(f"user or group missing for {path}: {exc}") from exc
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            self.changed.append(f"owner {path.name}")

    def _dir(self, path: Path, mode: int, key: str) -> None:
        if not path.is_dir():
            path.mkdir(parents=True, mode=mode)
            self.changed.append(f"{path.name}/")
        if path.stat().st_mode & 0o7777 != mode:
            path.chmod(mode)
            self.changed.append(f"mode {path.name}/")
        self._own(path, key)

    def _file(self, path: Path, make, mode: int = 0o600, key: str | None = None) -> str:
        """The file's content; created with make() if missing. Mode and owner are repaired."""
        if path.exists():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                if path.stat().st_mode & 0o7777 != mode:
                    path.chmod(mode)
                    self.changed.append(f"mode {path.name}")
                self._own(path, key or path.name)
                return value
        value = make()
        atomic_write_text(path, value + "\n", mode=mode)
        self.changed.append(path.name)
        self._own(path, key or path.name)
        return value

    def run(self) -> list[str]:
        """Create what is missing; returns what changed (empty on a second run)."""
        self.changed = []
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._dir(self.secrets_dir, 0o750, "secrets")
        self._dir(self.network_dir, 0o700, "network")
        box_id = self._file(self.data.box_id, new_box_id, mode=0o644, key="box-id")
        self._file(self.data.setup_code, new_setup_code)
        self._file(self.data.session_key, new_session_key)
        passphrase = self._file(self.data.hotspot_passphrase, new_hotspot_passphrase)
        self._write_profile(box_id, passphrase)
        self._file(self.done_marker, lambda: "firstboot complete", key=".done")
        return self.changed

    def _write_profile(self, box_id: str, passphrase: str) -> None:
        try:
            template = self.template.read_text(encoding="utf-8")
        except OSError as exc:
            raise FirstbootError(f"hotspot template {self.template}: {exc.strerror}") from exc
        text = render_hotspot_profile(template, box_id, passphrase)
        profile = self.network_dir / HOTSPOT_PROFILE
        current = profile.read_text(encoding="utf-8") if profile.exists() else None
        if current != text:
            # NetworkManager ignores keyfiles that are not 0600 and owned by root.
            atomic_write_text(profile, text, mode=0o600)
            self.changed.append(HOTSPOT_PROFILE)
        self._own(profile, HOTSPOT_PROFILE)

    def summary(self) -> dict[str, str]:
        """What the technician writes on the box's label (`circlebox firstboot --show`)."""
        if not self.done_marker.exists():
            raise FirstbootError("no secrets yet: run `circlebox firstboot` (or boot the box) first")
        box_id = self.data.box_id.read_text(encoding="utf-8").strip()
        setup = self.data.setup_code
        return {
            "box id": box_id,
            "hotspot name": hotspot_ssid(box_id),
            "hotspot passphrase": self._read_secret(self.data.hotspot_passphrase.name),
            # The admin page deletes the code once the admin password is set.
            "setup code": self._read_secret(setup.name) if setup.exists()
            else "used (the admin password is set; `circlebox setup-code --reset` makes a new one)",
        }

    def _read_secret(self, name: str) -> str:
        """A file in the secrets folder by name (`hotspot-passphrase`, `setup-code`...)."""
        return (self.secrets_dir / name).read_text(encoding="utf-8").strip()
