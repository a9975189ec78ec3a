"""The built image booted in QEMU (qemu-system-aarch64 -M virt, cortex-a72, 2 cores, 1 GB,
fully emulated on x86: every figure is an upper bound for a Pi 4).

- boot to READY: QEMU started -> circlebox.service active (Type=notify: READY=1 sent), by the
  host's clock; and systemd's own figure (ActiveEnterTimestampMonotonic, from kernel start);
- press to sound: the panel's Start posted through the forwarded admin port -> the first
  audible sample in QEMU's USB-speaker WAV (polled every 0.1 s);
- memory: RSS of each running Circlebox service's main process, and its cgroup's
  MemoryCurrent, on aarch64.

Needs the image of `make vm-test` (build/vm/circlebox-vm.img, or CIRCLEBOX_VM_IMAGE); prints
"skipped" without it. Run: .venv/bin/python -m bench.bench_vm
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from vm.admin_client import AdminPage  # noqa: E402
from vm.qemu_box import WAV_CHANNELS, QemuBox, have_vm_tools  # noqa: E402

AUDIBLE = 200  # of 32767: louder than any resampling noise
SERVICES = ("circlebox", "circlebox-admin")


def first_audible_after(wav: Path, start_byte: int) -> int | None:
    raw = np.fromfile(wav, dtype="<i2", offset=start_byte) if wav.exists() else np.zeros(0, "<i2")
    loud = np.flatnonzero(np.abs(raw.astype(np.int32)) > AUDIBLE)
    return None if loud.size == 0 else int(loud[0]) // WAV_CHANNELS


def wait_ready(vm: QemuBox, timeout: float = 900.0) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        _, out = vm.console.run("systemctl is-active circlebox")
        if out.strip() == "active":
            return time.monotonic() - vm.started_at
        time.sleep(1)
    raise SystemExit("circlebox.service did not become active")


def main() -> int:
    image = Path(os.environ.get("CIRCLEBOX_VM_IMAGE", REPO / "build/vm/circlebox-vm.img"))
    missing = have_vm_tools() or (None if image.is_file() else f"no image at {image} (make vm-test)")
    if missing:
        print(f"## Booted image (QEMU)\n\nskipped: {missing}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-vm-") as tmp:
        vm = QemuBox(image, Path(tmp))
        vm.prepare()
        try:
            rows = []
            for boot in ("first boot (makes secrets)", "second boot (read-only root)"):
                vm.start()
                vm.login(timeout=900)
                wall = wait_ready(vm)
                mono = int(vm.console.check("systemctl show circlebox -p ActiveEnterTimestampMonotonic")
                           .split("=", 1)[1])
                rows.append((boot, wall, mono / 1e6))
                if boot.startswith("first"):
                    vm.shutdown()
            shown = vm.console.check("circlebox firstboot --show")
            admin = AdminPage(vm.admin_url)
            admin.wait_until_up()
            code = re.search(r"setup code\D*(\d{6})", shown)
            if code:
                admin.post_form("/setup", {"code": code[1], "password": "bench-vm-pass-1",
                                           "confirm": "bench-vm-pass-1"})
            else:
                admin.post_form("/login", {"password": "bench-vm-pass-1"})
            start_byte = max(vm.wav.stat().st_size, 44)
            pressed = time.monotonic()
            admin.post_form("/panel/press", {"action": "start"}, token_from="/panel/")
            press_to_sound = None
            while time.monotonic() - pressed < 120:
                if first_audible_after(vm.wav, start_byte) is not None:
                    press_to_sound = time.monotonic() - pressed
                    break
                time.sleep(0.1)
            memory = []
            for unit in SERVICES:
                props = dict(line.split("=", 1) for line in vm.console.check(
                    f"systemctl show {unit} -p MainPID -p MemoryCurrent").splitlines() if "=" in line)
                pid = props.get("MainPID", "0")
                rss = vm.console.run(f"ps -o rss= -p {pid}")[1].strip() if pid != "0" else ""
                memory.append((unit, rss, props.get("MemoryCurrent", "")))
        finally:
            vm.shutdown()
    print("## Booted image (QEMU, emulated aarch64)\n")
    print("| boot | QEMU start -> circlebox READY (host clock) | systemd: kernel -> READY |")
    print("|---|---|---|")
    for boot, wall, mono in rows:
        print(f"| {boot} | {wall:.0f} s | {mono:.0f} s |")
    print("\npress to sound (panel Start -> first audible sample in the USB speaker's WAV): "
          + (f"{press_to_sound:.2f} s" if press_to_sound is not None else "no sound in 120 s"))
    print("\n| service | RSS of main process | cgroup MemoryCurrent |\n|---|---|---|")
    for unit, rss, current in memory:
        mib = f"{int(current) / 2**20:.0f} MiB" if current.isdigit() else current
        print(f"| {unit} | {int(rss) // 1024 if rss.isdigit() else rss} MiB | {mib} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
