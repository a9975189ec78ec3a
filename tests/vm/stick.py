"""A technician's USB stick for the VM: a signed content bundle built on the host with the key
the image trusts, on a FAT image made without root (mkfs.vfat + mtools), read back the same way.

The bundle carries a new version of the image's own circle with a different welcome, rendered
with the image's configuration (its sample rate and voice) into a copy of the image's prompt
cache, so only the changed prompt is synthesized.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vm.qemu_box import REPO, VmError, partitions

CIRCLEBOX = REPO / ".venv" / "bin" / "circlebox"
IMAGE_CONFIG = "/etc/circlebox/config.yaml"
OLD_WELCOME = "Welcome, everyone. This is a listening circle."
# No word of the old welcome's first seconds (what vm.speaker.heard matches): with "everyone" in
# both, each welcome scored 0.90-0.94 in the other's audio and the test could not tell them apart.
NEW_WELCOME = "Good morning, friends. Today's version arrived on the programme's update stick."
STICK_MB = 64
STICK_LABEL = "CBSTICK"
NEW_VERSION = 2  # the content version the test stick brings (the image has none installed)
SBIN_PATH = {**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}


@dataclass(frozen=True)
class ContentBundle:
    path: Path
    circle: str
    version: int
    cache: Path  # the rendered prompts the bundle was built from (to match what the box plays)


def image_file(image: Path, path: str) -> str:
    """One text file of the image's root partition (debugfs, no mount)."""
    root = partitions(image)[1]
    proc = subprocess.run(["debugfs", "-R", f"cat {path}", f"{image}?offset={root.start}"],
                          capture_output=True, text=True, env=SBIN_PATH)
    if proc.returncode != 0 or not proc.stdout:
        raise VmError(f"cannot read {path} from the image: {proc.stderr}")
    return proc.stdout


def circlebox(*argv: str) -> str:
    proc = subprocess.run([str(CIRCLEBOX), *argv], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise VmError(f"`circlebox {' '.join(argv)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def build_content_bundle(image: Path, image_cache: Path, key: Path, work: Path, circle: str,
                         version: int) -> ContentBundle:
    """`circlebox render` + `bundle build --script` on the host, as a programme's laptop does."""
    laptop = work / "laptop"
    shutil.copytree(image_cache, laptop / "cache")
    (laptop / "scripts").mkdir(parents=True)
    config = work / "image-config.yaml"
    config.write_text(image_file(image, IMAGE_CONFIG), encoding="utf-8")
    text = (REPO / "device" / "scripts" / f"{circle}.yaml").read_text(encoding="utf-8")
    changed = text.replace("\nversion: 1\n", f"\nversion: {version}\n", 1).replace(OLD_WELCOME, NEW_WELCOME, 1)
    if NEW_WELCOME not in changed or f"\nversion: {version}\n" not in changed:
        raise VmError(f"the packaged {circle} no longer has the welcome or version this test changes")
    (laptop / "scripts" / f"{circle}.yaml").write_text(changed, encoding="utf-8")
    common = ("--config", str(config), "--data", str(laptop))
    circlebox(*common, "render", circle)
    out = work / f"content-{version}.cbx"
    circlebox(*common, "bundle", "build", "--script", circle, "--kind", "content", "--version", str(version),
              "--key", str(key), "--out", str(out))
    return ContentBundle(out, circle, version, laptop / "cache")


def make_stick(path: Path, *files: Path) -> Path:
    """A whole-disk FAT32 stick (no partition table, like many sticks) with `files` at its top."""
    path.unlink(missing_ok=True)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", STICK_LABEL, "-C", str(path), str(STICK_MB * 1024)],
                   check=True, capture_output=True, env=SBIN_PATH)
    for file in files:
        subprocess.run(["mcopy", "-i", str(path), str(file), f"::{file.name}"], check=True)
    return path


def read_stick(path: Path, dest: Path) -> Path:
    """Everything on the stick, copied out with mtools (after it is unplugged)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mcopy", "-s", "-n", "-i", str(path), "::/", str(dest)], check=True, capture_output=True)
    return dest
