"""The built SD image booted in qemu-system-aarch64 -M virt: the whole box as a system.

The image is used as the Pi would use it, with what QEMU cannot give replaced by its nearest
equivalent: QEMU starts the kernel and initrd from the image's boot partition itself (the
Pi's firmware does that on a board) with the words of the image's own `cmdline.txt` (console
on the VM's serial port instead of the Pi's); a USB sound card whose output QEMU writes to a
WAV; the admin port forwarded to loopback; a USB stick plugged in through QEMU's monitor.

The only change to the image is the one a technician makes with Raspberry Pi Imager: a
maintenance login, here root on the serial console (a drop-in written into the test's copy
with debugfs; the image itself has no login at all).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AUTOLOGIN_DROPIN = "/etc/systemd/system/serial-getty@ttyAMA0.service.d/circlebox-vm-login.conf"
AUTOLOGIN = ("[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear "
             "--keep-baud 115200,57600,38400,9600 %I $TERM\n")
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal control sequences (bracketed paste...)
WAV_RATE = 48000  # QEMU's usb-audio: 48 kHz, 2 channels, S16LE
WAV_CHANNELS = 2


class VmError(AssertionError):
    """The VM did not do what the test waited for (with the console's last lines)."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int


def partitions(image: Path) -> list[Partition]:
    out = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}).stdout
    import json

    table = json.loads(out)["partitiontable"]
    sector = table.get("sectorsize", 512)
    return [Partition(i + 1, p["start"] * sector, p["size"] * sector)
            for i, p in enumerate(table["partitions"])]


def boot_files(image: Path, dest: Path) -> tuple[Path, Path, str]:
    """Kernel, initrd and kernel command line from the image's boot partition (FAT), read with
    mtools the way the Pi's firmware reads them (config.txt's kernel=/initramfs lines)."""
    boot = partitions(image)[0]
    where = f"{image}@@{boot.start}"
    config = subprocess.run(["mtype", "-i", where, "::config.txt"], capture_output=True, text=True,
                            check=True).stdout
    kernel = re.search(r"^kernel=(\S+)", config, re.M)
    initrd = re.search(r"^initramfs (\S+)", config, re.M)
    if not kernel or not initrd:
        raise VmError(f"config.txt names no kernel= / initramfs line:\n{config}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in (kernel[1], initrd[1]):
        subprocess.run(["mcopy", "-o", "-n", "-i", where, f"::{name}", str(dest / name)], check=True)
    cmdline = subprocess.run(["mtype", "-i", where, "::cmdline.txt"], capture_output=True, text=True,
                             check=True).stdout
    return dest / kernel[1], dest / initrd[1], cmdline.strip()


def vm_cmdline(pi_cmdline: str) -> str:
    """The Pi's command line with the VM's serial console instead of the Pi's consoles."""
    words = [w for w in pi_cmdline.split() if not w.startswith(("console=", "cma="))]
    return " ".join([*words, "console=ttyAMA0,115200"])


def debugfs(image: Path, part: Partition, *commands: str) -> str:
    """Run debugfs commands on one ext4 partition of the image (no mount, no loop device)."""
    proc = subprocess.run(["debugfs", "-w", "-f", "-", f"{image}?offset={part.start}"],
                          input="\n".join(commands) + "\n", capture_output=True, text=True,
                          env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"})
    if proc.returncode != 0:
        raise VmError(f"debugfs failed: {proc.stderr}")
    return proc.stdout + proc.stderr


def add_maintenance_login(image: Path, work: Path) -> None:
    """What Imager's "OS customisation" gives a technician: a console login (here root,
    automatically, on the VM's serial port), written into the test's copy of the root."""
    root = partitions(image)[1]
    dropin = work / "autologin.conf"
    dropin.write_text(AUTOLOGIN)
    folder = os.path.dirname(AUTOLOGIN_DROPIN)
    out = debugfs(image, root, f"mkdir {folder}", f"write {dropin} {AUTOLOGIN_DROPIN}",
                  f"sif {AUTOLOGIN_DROPIN} mode 0100644", f"sif {AUTOLOGIN_DROPIN} uid 0",
                  f"sif {AUTOLOGIN_DROPIN} gid 0", f"stat {AUTOLOGIN_DROPIN}")
    if "Type: regular" not in out:
        raise VmError(f"could not add the console login:\n{out}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """The serial console: everything the box printed, and a shell on it once logged in."""

    def __init__(self, proc: subprocess.Popen, log: Path, qemu_log: Path | None = None) -> None:
        self.proc = proc
        self.qemu_log = qemu_log  # QEMU's own messages, kept off the console's stream
        self._text = ""
        self._lock = threading.Lock()
        self._log = log.open("a", encoding="utf-8", errors="replace")
        self._serial = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            text = chunk.decode("utf-8", "replace").replace("\r", "")
            with self._lock:
                self._text += text
            self._log.write(text)
            self._log.flush()

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def mark(self) -> int:
        return len(self.text)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text.splitlines()[-lines:])

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 300.0) -> re.Match:
        end = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            found = rx.search(self.text, since)
            if found:
                return found
            if self.proc.poll() is not None:
                said = self.qemu_log.read_text(errors="replace")[-2000:] if self.qemu_log else ""
                raise VmError(f"QEMU exited ({self.proc.returncode}) waiting for {pattern!r}:\n{self.tail()}\n{said}")
            if time.monotonic() > end:
                raise VmError(f"no {pattern!r} on the console in {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        """Run a shell command on the box's console; its exit status and output."""
        self._serial += 1
        tag = f"CBX{self._serial}X"
        since = self.mark()
        # The marker is split in the typed line so its echo never matches.
        self.send(f"{command} 2>&1; echo {tag[:2]}''{tag[2:]}:$?:END")
        found = self.wait_for(rf"{tag}:(\d+):END", since, timeout)
        body = ESCAPES.sub("", self.text[since:found.start()])
        lines = [line for line in body.split("\n") if f"{tag[:2]}''" not in line]
        return int(found[1]), "\n".join(lines).strip()

    def check(self, command: str, timeout: float = 120.0) -> str:
        rc, out = self.run(command, timeout)
        if rc != 0:
            raise VmError(f"on the box: `{command}` exited {rc}:\n{out}")
        return out


class QemuBox:
    """One VM of the image: start, stop (cleanly or by pulling the power), the console, the
    admin page's URL, the speaker's WAV, a USB stick."""

    def __init__(self, image: Path, work: Path) -> None:
        self.image = image
        self.work = work
        self.disk = work / "disk.img"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.console: Console | None = None
        self.boots = 0
        self.started_at = 0.0
        self.wav: Path | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """The test's own copy of the image (sparse), with the maintenance login."""
        self.work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(self.image), str(self.disk)], check=True)
        add_maintenance_login(self.disk, self.work)

    def start(self) -> Console:
        kernel, initrd, cmdline = boot_files(self.disk, self.work / "boot")
        self.boots += 1
        self.wav = self.work / f"speaker-{self.boots}.wav"
        monitor = self.work / "monitor.sock"
        monitor.unlink(missing_ok=True)
        argv = [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", vm_cmdline(cmdline),
            "-drive", f"file={self.disk},if=none,id=sd,format=raw,cache=writeback",
            "-device", "virtio-blk-pci,drive=sd",
            "-device", "virtio-rng-pci",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:8080",
            "-device", "virtio-net-pci,netdev=net0,romfile=",  # no PXE ROM: the kernel is given
            "-audiodev", f"wav,id=speaker,path={self.wav},out.frequency={WAV_RATE},out.channels={WAV_CHANNELS}",
            "-device", "qemu-xhci,id=xhci",
            "-device", "usb-audio,audiodev=speaker,bus=xhci.0",
            "-monitor", f"unix:{monitor},server=on,wait=off",
            "-display", "none", "-serial", "stdio",
        ]
        self.started_at = time.monotonic()
        # QEMU's own messages (its audio's "Resetting rate control", warnings) go to a file: in
        # the console's stream they landed in the middle of a command's output.
        qemu_log = self.work / "qemu.log"
        with qemu_log.open("a") as stderr:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=stderr, start_new_session=True)
        self.console = Console(self.proc, self.work / "console.log", qemu_log)
        return self.console

    def login(self, timeout: float = 600.0) -> Console:
        """Wait for the maintenance shell on the console and make it quiet."""
        assert self.console is not None
        self.console.wait_for(r"root@circlebox:~# $|root@circlebox:~#", timeout=timeout)
        self.console.send("stty -echo; bind 'set enable-bracketed-paste off'; "
                          "export PS1= TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0")
        self.console.check("dmesg -n 1")  # kernel messages off the shell's console
        return self.console

    def monitor(self, command: str, timeout: float = 60.0) -> str:
        """One command on QEMU's monitor (HMP): sent after its prompt, answered when the next
        prompt comes (a busy host can take seconds; closing earlier could drop the command)."""

        def until_prompt(s: socket.socket, text: str = "") -> str:
            end = time.monotonic() + timeout
            while "(qemu)" not in text:
                if time.monotonic() > end:
                    raise VmError(f"QEMU's monitor did not answer {command!r}: {text!r}")
                chunk = s.recv(65536)
                if not chunk:
                    break
                text += chunk.decode(errors="replace")
            return text

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.work / "monitor.sock"))
            s.settimeout(timeout)
            until_prompt(s)  # the banner
            s.sendall(command.encode() + b"\n")
            return ESCAPES.sub("", until_prompt(s))

    def plug_stick(self, stick: Path) -> None:
        self.monitor(f"drive_add 0 if=none,id=stick,file={stick},format=raw")
        self.monitor("device_add usb-storage,bus=xhci.0,drive=stick,id=stickdev")

    def unplug_stick(self) -> None:
        self.monitor("device_del stickdev")

    def power_cut(self) -> None:
        """Pull the plug: QEMU killed, nothing flushed by the guest."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(30)

    def shutdown(self, timeout: float = 180.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            assert self.console is not None
            self.console.send("systemctl poweroff")
            self.proc.wait(timeout)
        except (subprocess.TimeoutExpired, OSError):
            self.power_cut()


def have_vm_tools() -> str | None:
    """None when this machine can run the VM tests, else what is missing."""
    for tool in ("qemu-system-aarch64", "mtype", "mcopy", "debugfs"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} missing (tools/install-vm-deps.sh)"
    return None
