#!/usr/bin/env python3
"""Check a Circlebox image tree (or a mounted image root): `image_build.sh --check ROOT`.

Standard library only (runs with any python3 on the build machine). Prints every problem and
exits 1 if there is any; warnings do not fail the check.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

VENV = "opt/circlebox/venv"
DATA = "var/lib/circlebox"
BEGIN_MARK = "# >>> circlebox (image_build.sh) >>>"
END_MARK = "# <<< circlebox <<<"
SECRET_NAMES = {"setup-code", "admin-session-key", "hotspot-passphrase", ".done", "box-id"}
PSEUDO = {"dev", "proc", "sys", "run", "tmp"}  # never walked (mount points on a live root)
SOUND_NODE_OVERLAYS = {"max98357a", "hifiberry-dac", "googlevoicehat-soundcard"}
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): what `circlebox bundle keygen` writes.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
KEYS_MODULE = "device/update/keys.py"  # names the directory the updater reads: DEFAULT_KEYS_DIR
APP_FILES = ("device/cli.py", "device/defaults.yaml", "device/config.py",
             "device/firstboot.py", "device/wallclock.py", "device/commands/firstboot.py")


class Checker:
    def __init__(self, root: Path, repo: Path) -> None:
        self.root, self.repo = root, repo
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.manifest = self._manifest()

    def bad(self, message: str) -> None:
        self.problems.append(message)

    def _manifest(self) -> dict[str, str]:
        path = self.root / "usr/share/circlebox/image-manifest.txt"
        if not path.is_file():
            self.bad("manifest usr/share/circlebox/image-manifest.txt missing")
            return {}
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {k: v for k, v in pairs}

    @property
    def build(self) -> str:
        return self.manifest.get("build", "")

    # -- files ---------------------------------------------------------------------------------

    def file_rules(self) -> list[tuple[str, list[Path], str, str]]:
        rules = []
        for line in (self.repo / "image/files.txt").read_text().splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            kind, src, dest = parts[0], parts[1].replace("{build}", self.build), parts[2]
            mode = parts[3] if len(parts) > 3 else ""
            sources = sorted(self.repo.glob(src)) if "*" in src else [self.repo / src]
            rules.append((kind, [p for p in sources if p.is_file() or "*" not in src], dest, mode))
        return rules

    def check_files(self) -> None:
        appended: dict[str, list[Path]] = {}
        for kind, sources, dest, mode in self.file_rules():
            if kind == "append":
                appended.setdefault(dest, []).extend(sources)
                continue
            for src in sources:
                target = self.root / dest.lstrip("/")
                if dest.endswith("/"):
                    target = target / src.name
                rel = target.relative_to(self.root)
                if not target.is_file():
                    self.bad(f"missing: /{rel}")
                elif target.read_bytes() != src.read_bytes():
                    self.bad(f"differs from {src.relative_to(self.repo)}: /{rel}")
                elif mode and stat.S_IMODE(target.stat().st_mode) != int(mode, 8):
                    self.bad(f"mode {oct(stat.S_IMODE(target.stat().st_mode))} != {mode}: /{rel}")
        for dest, sources in appended.items():
            self.check_block(dest, sources)

    def check_block(self, dest: str, sources: list[Path]) -> None:
        target = self.root / dest.lstrip("/")
        if not target.is_file():
            self.bad(f"missing: {dest}")
            return
        text = target.read_text()
        if text.count(BEGIN_MARK) != 1 or text.count(END_MARK) != 1:
            self.bad(f"{dest}: expected exactly one circlebox block")
            return
        block = text.split(BEGIN_MARK + "\n", 1)[1].split(END_MARK, 1)[0]
        expected = "".join(p.read_text() for p in sources)
        if block != expected:
            self.bad(f"{dest}: circlebox lines differ from {', '.join(p.name for p in sources)}")
        if dest.endswith("config.txt"):
            outside = text.split(BEGIN_MARK, 1)[0] + text.split(END_MARK, 1)[1]
            if any(line.startswith("dtparam=audio=") for line in outside.splitlines()):
                self.bad(f"{dest}: a dtparam=audio= line outside the circlebox block")
            overlays = [line.split("=", 1)[1].split(",")[0] for line in text.splitlines()
                        if line.strip().startswith("dtoverlay=")]
            sound = sorted(set(overlays) & SOUND_NODE_OVERLAYS)
            if len(sound) > 1:
                self.bad(f"{dest}: overlays fight over the sound card: {', '.join(sound)}")

    # -- units ---------------------------------------------------------------------------------

    def check_units(self) -> None:
        etc = self.root / "etc/systemd/system"
        for unit in sorted((self.repo / "systemd").iterdir()):
            if not unit.is_file():
                continue
            text = unit.read_text()
            if "[Install]" not in text:
                continue
            if "@." in unit.name and "DefaultInstance=" not in text:
                continue
            install = text.split("[Install]", 1)[1]
            targets = [t for line in install.splitlines() if line.startswith("WantedBy=")
                       for t in line.split("=", 1)[1].split()]
            for target in targets:
                link = etc / f"{target}.wants" / unit.name
                if not link.is_symlink():
                    self.bad(f"not enabled: {unit.name} (no {target}.wants/{unit.name})")
                elif os.readlink(link) not in (f"/etc/systemd/system/{unit.name}",
                                               f"../{unit.name}"):
                    self.bad(f"{target}.wants/{unit.name} points to {os.readlink(link)}")

    # -- app -----------------------------------------------------------------------------------

    def check_app(self) -> None:
        venv = self.root / VENV
        if not (venv / "pyvenv.cfg").is_file():
            self.bad(f"no venv at /{VENV} (pyvenv.cfg missing)")
            return
        script = venv / "bin/circlebox"
        if not (script.is_file() and os.access(script, os.X_OK)):
            self.bad(f"/{VENV}/bin/circlebox missing or not executable")
        else:
            shebang = script.read_text().splitlines()[0]
            if not re.search(r"/opt/circlebox/venv/bin/python[0-9.]*$", shebang):
                self.bad(f"/{VENV}/bin/circlebox runs {shebang!r}, not the venv's python")
        link = self.root / "usr/local/bin/circlebox"
        if not link.is_symlink() or os.readlink(link) != f"/{VENV}/bin/circlebox":
            self.bad(f"/usr/local/bin/circlebox is not a link to /{VENV}/bin/circlebox")
        sites = sorted(venv.glob("lib/python3*/site-packages"))
        if len(sites) != 1:
            self.bad(f"expected one site-packages in /{VENV}, found {len(sites)}")
            return
        site = sites[0]
        dists = sorted(site.glob("circlebox-*.dist-info"))
        if len(dists) != 1:
            self.bad(f"expected one circlebox dist-info, found {len(dists)}")
            return
        self.check_record(site, dists[0])
        for rel in APP_FILES:
            if not (site / rel).is_file():
                self.bad(f"app file missing from the venv: {rel}")
        for pattern, what in (("device/scripts/*.yaml", "packaged circles"),
                              ("local_admin/templates/*.html", "admin page templates"),
                              ("audio/*.py", "the audio package")):
            if not list(site.glob(pattern)):
                self.bad(f"no {what} ({pattern}) in the venv")
        entry = (dists[0] / "entry_points.txt")
        if not entry.is_file() or "circlebox = device.cli:main" not in entry.read_text():
            self.bad("console script circlebox = device.cli:main not declared")
        if not list((self.root / "opt/circlebox/wheels").glob("circlebox-*.whl")):
            self.bad("the circlebox wheel is missing from /opt/circlebox/wheels")
        if self.manifest.get("deps") == "yes":
            self.check_deps(site)
        else:
            self.warnings.append("dependencies not installed in the venv (tree built without "
                                 "--wheelhouse); the full build installs them in the chroot")

    def check_record(self, site: Path, dist: Path) -> None:
        record = dist / "RECORD"
        if not record.is_file():
            self.bad(f"{dist.name}/RECORD missing")
            return
        for line in record.read_text().splitlines():
            path, digest, size = [*line.rsplit(",", 2), "", ""][:3]
            if not digest:
                continue
            algo, _, expected = digest.partition("=")
            target = (site / path).resolve()
            if not target.is_file():
                self.bad(f"installed file missing: {path}")
                continue
            data = target.read_bytes()
            actual = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=")
            if actual.decode() != expected or (size and int(size) != len(data)):
                self.bad(f"installed file differs from the wheel: {path}")

    def check_deps(self, site: Path) -> None:
        # <name>-<version>.dist-info, the name with "_" for "-"
        installed = {re.sub(r"[-_.]+", "-", d.name.removesuffix(".dist-info").rsplit("-", 1)[0]).lower()
                     for d in site.glob("*.dist-info")}
        pins = [*(self.repo / "image/requirements-pi.txt").read_text().splitlines(),
                *(self.repo / "image/requirements-pi-sdist.txt").read_text().splitlines()]
        for line in pins:
            match = re.match(r"([A-Za-z0-9_.-]+)==", line)
            if match and re.sub(r"[-_.]+", "-", match[1]).lower() not in installed:
                if match[1] == "lgpio" and self.manifest.get("mode") == "tree":
                    continue  # Pi-only; the tree mode skips it
                self.bad(f"dependency not installed: {match[1]}")

    # -- update keys ---------------------------------------------------------------------------

    def keys_dir(self) -> str:
        """DEFAULT_KEYS_DIR from the updater's own module (read, not imported: stdlib only here)."""
        tree = ast.parse((self.repo / KEYS_MODULE).read_text())
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DEFAULT_KEYS_DIR"
                                                     for t in node.targets)
                    and isinstance(node.value, ast.Call) and node.value.args
                    and isinstance(node.value.args[0], ast.Constant)):
                return str(node.value.args[0].value).strip("/")
        raise SystemExit(f"check: cannot find DEFAULT_KEYS_DIR = Path(...) in {KEYS_MODULE}")

    def check_keys(self) -> None:
        """At least one valid update-signing public key where the updater reads them."""
        rel = self.keys_dir()
        folder = self.root / rel
        how = ("build the image with --pubkey FILE (the .pub from `circlebox bundle keygen`; "
               "see docs/setup-a-box.md)")
        keys = sorted(folder.glob("*.pub")) if folder.is_dir() else []
        if not keys:
            self.bad(f"no update signing key in /{rel} (*.pub): the box would refuse every "
                     f"update (U04); {how}")
            return
        for key in keys:
            where = f"/{key.relative_to(self.root)}"
            if not _is_ed25519_public_pem(key.read_bytes()):
                self.bad(f"{where} is not an Ed25519 public key (PEM) as keygen writes it; {how}")
            st = key.stat()
            if stat.S_IMODE(st.st_mode) != 0o644:
                self.bad(f"mode {oct(stat.S_IMODE(st.st_mode))} != 0644: {where}")
            if self.manifest.get("mode") == "chroot" and st.st_uid != 0:
                self.bad(f"not owned by root: {where}")

    # -- data, secrets, permissions ------------------------------------------------------------

    def check_data(self) -> None:
        data = self.root / DATA
        if not data.is_dir():
            self.bad(f"/{DATA} missing")
            return
        rendered = self.manifest.get("rendered", "")
        if rendered == "yes" and not any(p.is_file() for p in (data / "cache").rglob("*")):
            self.bad("manifest says rendered but the prompt cache is empty")
        elif rendered == "unavailable":
            message = "prompts not pre-rendered: `circlebox render` was not available"
            if self.manifest.get("mode") == "chroot":
                self.bad(message)
            else:
                self.warnings.append(message)
        if self.manifest.get("mode") == "chroot":
            self.check_cache_owner(data / "cache")
        vosk = self.manifest.get("vosk", "none")
        if vosk != "none":
            model = data / "models/vosk" / vosk
            if not (model / "am/final.mdl").is_file() or not (model / "conf").is_dir():
                self.bad(f"vosk model {vosk} incomplete in /{DATA}/models/vosk")

    def check_cache_owner(self, cache: Path) -> None:
        """On the box the runtime and the admin page (group circlebox) add sounds to the folders
        of the pre-rendered cache: none may stay the builder's (a root-owned cache/prompts
        refused a course's announcements, found booting the image in QEMU)."""
        users = {line.split(":")[0]: line.split(":")[2]
                 for line in (self.root / "etc/passwd").read_text().splitlines() if line.count(":") >= 3}
        owner = int(users.get("circlebox", -1))
        folders = [cache, *(p for p in cache.rglob("*") if p.is_dir() and not p.is_symlink())]
        for folder in folders:
            st = folder.stat()
            if st.st_uid != owner or not st.st_mode & stat.S_IWGRP:
                self.bad(f"not the runtime's (circlebox, group-writable): /{folder.relative_to(self.root)}")

    def check_no_secrets(self) -> None:
        for path in sorted(self.walk()):
            rel = path.relative_to(self.root)
            if path.is_symlink() or not path.is_file():
                continue
            top = rel.parts[0] if rel.parts else ""
            if path.name in SECRET_NAMES and top in {"var", "etc", "opt", "boot"}:
                self.bad(f"secret in the image (made at first boot instead): /{rel}")
            elif path.name.startswith("ssh_host_") and path.name.endswith("_key"):
                self.bad(f"SSH host key in the image (every box would share it): /{rel}")
            elif top in {"etc", "var", "boot"} and path.stat().st_size < 1_000_000:
                text = path.read_bytes()
                if b"PRIVATE KEY-----" in text:
                    self.bad(f"private key in the image: /{rel}")
                if path.suffix == ".nmconnection" or path.name.endswith(".nmconnection.in"):
                    for line in text.decode(errors="replace").splitlines():
                        if line.startswith("psk=") and line != "psk=@PASSPHRASE@":
                            self.bad(f"Wi-Fi passphrase in the image: /{rel}")
        for sub in ("secrets", "network"):
            folder = self.root / DATA / sub
            if folder.is_dir() and any(folder.iterdir()):
                self.bad(f"/{DATA}/{sub} is not empty in the image")

    def walk(self) -> Iterator[Path]:
        """Every path under the root except the pseudo file systems' mount points."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d not in PSEUDO]
            for name in dirnames + filenames:
                yield Path(dirpath) / name

    def check_permissions(self) -> None:
        for path in self.walk():
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
            if st.st_mode & stat.S_IWOTH and not sticky_dir:
                self.bad(f"world-writable: /{path.relative_to(self.root)}")

    def run(self) -> int:
        if self.manifest:
            self.check_files()
            self.check_units()
            self.check_app()
            self.check_data()
        self.check_keys()
        self.check_no_secrets()
        self.check_permissions()
        for warning in self.warnings:
            print(f"check: warning: {warning}")
        if self.problems:
            print(f"check: FAIL: {len(self.problems)} problem(s) in {self.root}")
            for problem in self.problems:
                print(f"  - {problem}")
            return 1
        print(f"check: PASS: {self.root} (build {self.build})")
        return 0


def _is_ed25519_public_pem(data: bytes) -> bool:
    text = data.decode("ascii", errors="replace").strip().splitlines()
    if len(text) < 3 or text[0] != "-----BEGIN PUBLIC KEY-----" or text[-1] != "-----END PUBLIC KEY-----":
        return False
    try:
        der = base64.b64decode("".join(text[1:-1]), validate=True)
    except ValueError:
        return False
    return len(der) == 44 and der.startswith(ED25519_SPKI_PREFIX)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, help="image tree or mounted image root")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"check: FAIL: {args.root} is not a directory")
        return 1
    return Checker(args.root.resolve(), args.repo.resolve()).run()


if __name__ == "__main__":
    sys.exit(main())
