"""image_build.sh: the image's file tree is built and checked, and the check catches mistakes.

Runs `image_build.sh --tree-only` once (about 20 s: most of it is building the wheel), with
CIRCLEBOX_IMAGE_NO_RENDER=1 so CI does not spend minutes rendering prompts (rendering is
covered by the renderer's own tests). Then breaks copies of the tree one way at a time and
requires `--check` to fail naming the problem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from device.update.keys import (
    DEFAULT_KEYS_DIR,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    load_trusted_keys,
    sign_manifest,
    verify_signature,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "image_build.sh"
ENV = {**os.environ, "CIRCLEBOX_IMAGE_NO_RENDER": "1"}

pytestmark = pytest.mark.skipif(shutil.which("systemctl") is None,
                                reason="systemctl missing (tools/install-system-deps.sh)")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env=env or ENV, cwd=REPO)


@pytest.fixture(scope="module")
def vosk_model(tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("vosk") / "vosk-model-small-test"
    (model / "am").mkdir(parents=True)
    (model / "conf").mkdir()
    (model / "am" / "final.mdl").write_bytes(b"not a real model")
    (model / "conf" / "mfcc.conf").write_text("--sample-frequency=16000\n")
    return model


@pytest.fixture(scope="module")
def programme_keys(tmp_path_factory) -> list[tuple[Path, Path]]:
    """Two key pairs as `circlebox bundle keygen` makes them: the programme's and its backup."""
    folder = tmp_path_factory.mktemp("keys")
    return [generate_keypair(folder, "circlebox-signing"), generate_keypair(folder, "backup-2026")]


def pubkey_args(keys: list[tuple[Path, Path]]) -> list[str]:
    return [arg for _, pub in keys for arg in ("--pubkey", str(pub))]


@pytest.fixture(scope="module")
def tree(tmp_path_factory, vosk_model, programme_keys) -> Path:
    out = tmp_path_factory.mktemp("image") / "root"
    proc = run("--tree-only", str(out), "--with-vosk", str(vosk_model), *pubkey_args(programme_keys))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check: PASS" in proc.stdout
    return out


@pytest.fixture
def copy(tree, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tree, dst, symlinks=True)
    return dst


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return run("--check", str(root))


def test_tree_has_the_pieces(tree):
    etc = tree / "etc/systemd/system"
    for unit in ("circlebox.service", "circlebox-admin.service", "circlebox-firstboot.service"):
        link = etc / "multi-user.target.wants" / unit
        assert link.is_symlink() and os.readlink(link) == f"/etc/systemd/system/{unit}"
    assert (etc / "circlebox-fault.service").is_file()  # started only by OnFailure=
    assert not (etc / "multi-user.target.wants" / "circlebox-fault.service").exists()
    config_txt = (tree / "boot/firmware/config.txt").read_text()
    assert "dtoverlay=max98357a,no-sdmode" in config_txt
    assert "LABEL=CBDATA" in (tree / "etc/fstab").read_text()
    manifest = (tree / "usr/share/circlebox/image-manifest.txt").read_text()
    assert "build=i2s-amp-usb-mic" in manifest and "vosk=vosk-model-small-test" in manifest
    assert "rendered=skipped" in manifest
    assert (tree / "var/lib/circlebox/models/vosk/vosk-model-small-test/am/final.mdl").is_file()
    assert not list((tree / "var/lib/circlebox").rglob("secrets"))


def test_tree_trusts_the_programme_keys(tree, programme_keys):
    """Every --pubkey lands where the updater reads its keys, 0644, and a manifest signed with
    either private key is accepted by the keys the box would load (no U04)."""
    folder = tree / DEFAULT_KEYS_DIR.relative_to("/")
    assert sorted(p.name for p in folder.iterdir()) == ["backup-2026.pub", "circlebox-signing.pub"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in folder.iterdir())
    assert oct(folder.stat().st_mode & 0o777) == "0o755"
    trusted = load_trusted_keys(folder)
    for private, public in programme_keys:
        manifest = b'{"kind": "content", "version": 1}'
        signed_by = verify_signature(manifest, sign_manifest(manifest, load_private_key(private)), trusted)
        assert signed_by == key_id(load_public_key(public))


def test_installed_app_runs_from_the_tree(tree, tmp_path):
    """The venv's own python imports the app from the tree (not from this checkout), and the
    installed firstboot fills the installed hotspot template."""
    python = tree / "opt/circlebox/venv/bin/python"
    code = (
        "import device, sys\n"
        "from pathlib import Path\n"
        "from device.firstboot import Firstboot\n"
        "assert Path(device.__file__).is_relative_to(Path(sys.argv[1])), device.__file__\n"
        "b = Firstboot(Path(sys.argv[2]), template=Path(sys.argv[3]), owners=None)\n"
        "print(sorted(b.run()))\n"
    )
    template = tree / "etc/circlebox/circlebox-hotspot.nmconnection.in"
    proc = subprocess.run([str(python), "-c", code, str(tree), str(tmp_path / "data"),
                           str(template)], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"]}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "circlebox-hotspot.nmconnection" in proc.stdout
    profile = (tmp_path / "data/network/circlebox-hotspot.nmconnection").read_text()
    assert "psk=@PASSPHRASE@" not in profile


def unlink(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def write(rel: str, text: str, mode: int = 0o600) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    return apply


def edit(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new, 1))
    return apply


def chmod(rel: str, mode: int) -> Callable[[Path], None]:
    return lambda root: (root / rel).chmod(mode)


def tamper_app(root: Path) -> None:
    target = next(root.glob("opt/circlebox/venv/lib/python3*/site-packages/device/wallclock.py"))
    target.write_text(target.read_text() + "\n# changed\n")


BREAKAGES = {
    "unit not enabled": (
        unlink("etc/systemd/system/multi-user.target.wants/circlebox.service"),
        "not enabled: circlebox.service"),
    "unit missing": (
        unlink("etc/systemd/system/circlebox-admin.service"),
        "missing: /etc/systemd/system/circlebox-admin.service"),
    "secret baked in": (
        write("var/lib/circlebox/secrets/setup-code", "123456\n"),
        "secret in the image"),
    "ssh host key": (
        write("etc/ssh/ssh_host_ed25519_key", "x"),
        "SSH host key"),
    "hotspot passphrase": (
        edit("etc/circlebox/circlebox-hotspot.nmconnection.in", "psk=@PASSPHRASE@",
             "psk=hunter22hunter"),
        "Wi-Fi passphrase in the image"),
    "world-writable file": (
        chmod("etc/asound.conf", 0o666),
        "world-writable: /etc/asound.conf"),
    "config.txt line lost": (
        edit("boot/firmware/config.txt", "dtoverlay=max98357a,no-sdmode\n", ""),
        "circlebox lines differ"),
    "two sound overlays": (
        edit("boot/firmware/config.txt", "# >>> circlebox",
             "dtoverlay=googlevoicehat-soundcard\n# >>> circlebox"),
        "fight over the sound card"),
    "stock audio param left on": (
        edit("boot/firmware/config.txt", "# >>> circlebox", "dtparam=audio=on\n# >>> circlebox"),
        "dtparam=audio= line outside"),
    "fstab line lost": (
        edit("etc/fstab", "LABEL=CBDATA", "LABEL=OTHER"),
        "/etc/fstab: circlebox lines differ"),
    "stale alsa card": (
        edit("etc/alsa/conf.d/60-circlebox-card.conf", "MAX98357A", "OTHER"),
        "differs from firmware_config/builds/i2s-amp-usb-mic/alsa-card.conf"),
    "app file changed": (tamper_app, "installed file differs from the wheel"),
    "command not on PATH": (
        unlink("usr/local/bin/circlebox"), "/usr/local/bin/circlebox is not a link"),
    "console script missing": (
        unlink("opt/circlebox/venv/bin/circlebox"), "bin/circlebox missing"),
    "vosk model incomplete": (
        unlink("var/lib/circlebox/models/vosk/vosk-model-small-test/am/final.mdl"),
        "vosk model vosk-model-small-test incomplete"),
    "manifest missing": (
        unlink("usr/share/circlebox/image-manifest.txt"), "manifest"),
    "no update key": (
        lambda root: shutil.rmtree(root / DEFAULT_KEYS_DIR.relative_to("/")),
        f"no update signing key in {DEFAULT_KEYS_DIR} (*.pub): the box would refuse every update "
        "(U04); build the image with --pubkey FILE"),
    "update key is not a key": (
        write(f"{DEFAULT_KEYS_DIR.relative_to('/')}/circlebox-signing.pub", "hello\n", 0o644),
        "circlebox-signing.pub is not an Ed25519 public key"),
    "update key not readable by the updater's user": (
        chmod(f"{DEFAULT_KEYS_DIR.relative_to('/')}/backup-2026.pub", 0o600),
        "mode 0o600 != 0644: /etc/circlebox/keys/backup-2026.pub"),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_check_fails_on(copy, name):
    breakage, expected = BREAKAGES[name]
    assert check(copy).returncode == 0  # the copy itself is fine
    breakage(copy)
    proc = check(copy)
    assert proc.returncode == 1, proc.stdout
    assert "check: FAIL" in proc.stdout and expected in proc.stdout, proc.stdout


def test_check_lists_every_problem(copy):
    BREAKAGES["unit not enabled"][0](copy)
    BREAKAGES["secret baked in"][0](copy)
    out = check(copy).stdout
    assert "not enabled: circlebox.service" in out and "secret in the image" in out


def test_full_build_refuses_without_pinned_checksum(tmp_path, programme_keys):
    """The real base-image sha256 cannot be fetched here; the full build must refuse to run
    until image/versions.env has it (and the wheel hashes)."""
    versions = (REPO / "image/versions.env").read_text()
    proc = run("--image", str(tmp_path / "circlebox.img"), *pubkey_args(programme_keys))
    assert proc.returncode != 0
    assert not (tmp_path / "circlebox.img").exists()
    if "RPI_OS_SHA256=FILL-ME" in versions:
        assert "RPI_OS_SHA256 is not filled in" in proc.stderr
    assert "downloading" not in proc.stderr


def test_tree_only_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "something").write_text("x")
    proc = run("--tree-only", str(tmp_path))
    assert proc.returncode != 0 and "not empty" in proc.stderr


def test_unknown_build_is_refused(tmp_path, programme_keys):
    proc = run("--tree-only", str(tmp_path / "out"), "--build", "no-such-build", *pubkey_args(programme_keys))
    assert proc.returncode != 0 and "unknown build" in proc.stderr


def test_pins_are_pinned():
    env = dict(line.split("=", 1) for line in (REPO / "image/versions.env").read_text()
               .splitlines() if line and not line.startswith("#"))
    assert env["RPI_OS_URL"].startswith("https://downloads.raspberrypi.com/")
    assert "bookworm-arm64-lite" in env["RPI_OS_URL"]
    reqs = [line for line in (REPO / "image/requirements-pi.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert reqs and all("==" in line for line in reqs), "every package pinned to a version"
    assert not any(line.startswith("onnxruntime==1.21.0") for line in reqs)


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck missing (tools/install-system-deps.sh installs it)")
def test_shellcheck_is_clean():
    proc = subprocess.run(["shellcheck", "-x", str(SCRIPT)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout


def sfdisk_dump(img: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run(["sfdisk", "-d", str(img)], capture_output=True, text=True,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        if " : start=" in line:
            fields = dict(f.strip().split("=", 1) for f in line.split(" : ", 1)[1].split(",") if "=" in f)
            rows.append((int(fields["start"]), int(fields["size"]), fields["type"]))
    return rows


@pytest.mark.skipif(shutil.which("sfdisk") is None and not Path("/usr/sbin/sfdisk").exists(),
                    reason="sfdisk missing (tools/install-system-deps.sh installs fdisk)")
def test_full_build_partitioning_on_a_small_fake_image(tmp_path):
    """The full build's partition step (the part that needs no root): the root grows by
    exactly ROOT_GROW and the data partition follows it, aligned, without touching boot."""
    env = {**ENV, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}
    img = tmp_path / "fake.img"
    img.write_bytes(b"")
    os.truncate(img, 40 * 1024 * 1024)  # like the official image: root ends at the end
    layout = "label: dos\nstart=8192, size=32768, type=c\nstart=40960, size=40960, type=83\n"
    subprocess.run(["sfdisk", "-q", str(img)], input=layout, text=True, check=True, env=env)
    proc = subprocess.run(["bash", "-c", f'source "{SCRIPT}" && add_partitions "$1" 16M 32M',
                           "x", str(img)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    boot, root, data = sfdisk_dump(img)
    assert boot == (8192, 32768, "c")
    assert root == (40960, 40960 + 16 * 2048, "83")
    assert data[0] >= root[0] + root[1] and data[0] % 2048 == 0
    assert data[1:] == (32 * 2048, "83")
    assert img.stat().st_size == (data[0] + data[1]) * 512
    again = subprocess.run(["bash", "-c", f'source "{SCRIPT}" && add_partitions "$1" 16M 32M',
                            "x", str(img)], capture_output=True, text=True, env=env)
    assert again.returncode != 0 and "expected exactly 2 partitions" in again.stderr


@pytest.mark.slow
def test_tree_with_rendered_prompts(tmp_path, programme_keys):
    """The real thing with rendering (about 2 minutes): prompts land in the data partition."""
    out = tmp_path / "root"
    proc = run("--tree-only", str(out), *pubkey_args(programme_keys), env={k: v for k, v in ENV.items()
                                             if k != "CIRCLEBOX_IMAGE_NO_RENDER"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rendered=yes" in (out / "usr/share/circlebox/image-manifest.txt").read_text()
    assert list((out / "var/lib/circlebox/cache").rglob("*.wav"))
    shutil.rmtree(out / "var/lib/circlebox/cache")
    (out / "var/lib/circlebox/cache").mkdir()
    broken = check(out)
    assert broken.returncode == 1 and "cache is empty" in broken.stdout


def test_check_skips_pseudo_file_systems(copy):
    """On a mounted image root /proc, /dev... may be bind mounts of the host: not walked."""
    for rel in ("proc/1/environ", "dev/null", "run/x"):
        write(rel, "x", 0o666)(copy)
    assert check(copy).returncode == 0


def _pins(path: Path) -> dict[str, str]:
    """name -> the whole line, for every pinned requirement in a requirements file."""
    import re

    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = line
    return pins


def test_every_dependency_of_the_box_is_pinned_with_a_hash():
    """Each package circlebox[tts,listen,admin,pi] names is pinned for the image (a wheel, or a
    pure-Python sdist built into one), every pin carries its sha256 (the full build installs
    with --require-hashes), and nothing is pinned twice."""
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    needed = [*project["dependencies"], *(r for e in ("tts", "listen", "admin", "pi") for r in extras[e])]
    wheels = _pins(REPO / "image/requirements-pi.txt")
    sdists = _pins(REPO / "image/requirements-pi-sdist.txt")
    assert not set(wheels) & set(sdists)
    pinned = {**wheels, **sdists}
    for req in needed:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", req)[0]).lower()
        assert name in pinned, f"{req} (pyproject.toml) is not pinned in image/requirements-pi*.txt"
    for line in pinned.values():
        assert re.search(r" --hash=sha256:[0-9a-f]{64}$", line), f"no hash: {line}"
    assert "srt" in sdists  # vosk's dependency: PyPI has only its source


def test_debian_base_is_pinned():
    env = dict(line.split("=", 1) for line in (REPO / "image/versions.env").read_text()
               .splitlines() if line and not line.startswith("#"))
    assert env["DEBIAN_SUITE"] == "bookworm" and env["PYTHON_MINOR"] == "3.11"  # bookworm's python3
    assert "non-free-firmware" in env["DEBIAN_COMPONENTS"]  # raspi-firmware lives there
    packages = {line.strip() for line in (REPO / "image/debian-packages.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"linux-image-arm64", "raspi-firmware", "systemd", "python3-venv", "overlayroot"} <= packages
    apt_packages = env["APT_PACKAGES"].strip('"').split()
    assert set(apt_packages) <= packages, "the Debian base lacks a package the rpi base installs"


@pytest.mark.skipif(any(shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()
                        for t in ("mkfs.vfat", "mcopy", "mke2fs", "sfdisk", "blkid")),
                    reason="dosfstools/mtools missing (tools/install-vm-deps.sh)")
def test_debian_assembly_makes_three_labelled_partitions(tmp_path):
    """The --base debian image is assembled from a folder without loop devices: boot (FAT,
    CBBOOT) with the firmware's files, root (ext4, CBROOT) without them and with an empty data
    mount point, data (ext4, CBDATA) with what was in /var/lib/circlebox."""
    env = {**ENV, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}
    work = tmp_path / "work"
    root = work / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/cmdline.txt").write_text("root=LABEL=CBROOT rootwait\n")
    (root / "var/lib/circlebox/cache").mkdir(parents=True)
    (root / "var/lib/circlebox/cache/a.wav").write_bytes(b"RIFF")
    (root / "var/lib/circlebox").chmod(0o3775)  # as tmpfiles.d makes it: services add entries
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("circlebox\n")
    out = tmp_path / "box.img"
    proc = subprocess.run(["bash", "-c", f'source "{SCRIPT}" && WORK="$1" MNT="$1/root" DATA_SIZE=16M '
                           'assemble_debian "$2"', "x", str(work), str(out)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    img = Path(f"{out}.tmp")
    rows = sfdisk_dump(img)
    assert [r[2] for r in rows] == ["c", "83", "83"]
    labels = []
    for start, _, _ in rows:
        probe = subprocess.run(["blkid", "-p", "-O", str(start * 512), "-s", "LABEL", "-o", "value", str(img)],
                               capture_output=True, text=True, env=env)
        labels.append(probe.stdout.strip())
    assert labels == ["CBBOOT", "CBROOT", "CBDATA"]
    boot = f"{img}@@{rows[0][0] * 512}"
    assert "rootwait" in subprocess.run(["mtype", "-i", boot, "::cmdline.txt"], capture_output=True,
                                        text=True, env=env).stdout

    def ext4_ls(part: int, path: str) -> str:
        return subprocess.run(["debugfs", "-R", f"ls -l {path}", f"{img}?offset={rows[part][0] * 512}"],
                              capture_output=True, text=True, env=env).stdout

    assert "a.wav" in ext4_ls(2, "/cache")
    top = subprocess.run(["debugfs", "-R", "stat /", f"{img}?offset={rows[2][0] * 512}"],
                         capture_output=True, text=True, env=env).stdout
    assert "Mode:  03775" in top, top
    assert "cache" not in ext4_ls(1, "/var/lib/circlebox") and "hostname" in ext4_ls(1, "/etc")
    assert "cmdline.txt" not in ext4_ls(1, "/boot/firmware")
