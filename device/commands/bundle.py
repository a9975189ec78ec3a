"""`circlebox bundle`: make keys, build, verify and apply signed update bundles (.cbx).

keygen/build/verify run on any laptop; apply installs into a box root (any directory, so the
same path is exercised in tests); finish-pending and status are for the box itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

KINDS = ("app", "content", "voice", "language_pack", "config")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="signed update bundles: keygen, build, verify, apply")
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    k = bsub.add_parser("keygen", help="make a signing key pair (keep the .key off the box)")
    k.add_argument("--out", type=Path, required=True, help="directory for <name>.key and <name>.pub")
    k.add_argument("--name", default="circlebox-signing")
    k.set_defaults(handler=_keygen)

    b = bsub.add_parser("build", help="build and sign a bundle from a directory or a script")
    b.add_argument("src", nargs="?", type=Path, help="directory whose files become the payload")
    b.add_argument("--script", metavar="CIRCLE",
                   help="a circle id or .yaml file, with the prompts `circlebox render CIRCLE` made for it")
    b.add_argument("--course", metavar="COURSE",
                   help="a course id or .yaml file, with every circle it names and their rendered prompts "
                        "(--kind content)")
    b.add_argument("--cache", type=Path,
                   help="the prompt cache it was rendered into (default: where `render` puts it, <data>/cache)")
    b.add_argument("--key", type=Path, required=True, help="private key (.key)")
    b.add_argument("--kind", choices=KINDS, required=True)
    b.add_argument("--version", type=int, required=True, help="integer, higher than the installed one")
    b.add_argument(
        "--min-installed",
        type=int,
        default=0,
        help="the box must already have at least this version of the kind",
    )
    b.add_argument("--compatible", default=None, help="device family (default circlebox-pi-v1)")
    b.add_argument("--description", default="")
    b.add_argument("--out", type=Path, required=True, help="the .cbx file to write")
    b.set_defaults(handler=_build)

    v = bsub.add_parser("verify", help="check a bundle completely; says exactly what is wrong")
    v.add_argument("file", type=Path)
    _key_args(v)
    v.add_argument("--compatible", default=None, help="also require this compatible string")
    v.set_defaults(handler=_verify)

    a = bsub.add_parser("apply", help="install a bundle into a box root (default: the data dir)")
    a.add_argument("file", type=Path)
    _box_args(a)
    a.set_defaults(handler=_apply)

    f = bsub.add_parser("finish-pending", help="switch to staged releases (after a circle, at boot)")
    _box_args(f)
    f.set_defaults(handler=_finish)

    s = bsub.add_parser("status", help="installed, staged and refused versions, and the last result")
    s.add_argument("--root", type=Path, help="box root (default: the data dir)")
    s.set_defaults(handler=_status)


def _key_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pubkey", type=Path, help="trust this one public key")
    g.add_argument("--keys-dir", type=Path, help="trust every *.pub here (default /etc/circlebox/keys)")


def _box_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, help="box root (default: the data dir)")
    _key_args(p)
    p.add_argument("--compatible", default=None, help="this box's compatible string")
    p.add_argument(
        "--system",
        action="store_true",
        help="on the box: restart circlebox.service and wait for systemd's health verdict",
    )
    p.add_argument("--restart-cmd", help="command run to restart after the switch (default: none)")
    p.add_argument("--health-cmd", help="command that exits 0 when the new release is ready")
    p.add_argument("--circle-lock", type=Path, help="lock file a running circle holds")
    p.add_argument("--ready-timeout", type=float, default=30.0)
    p.add_argument("--stay-up", type=float, default=15.0)


def _root(args: argparse.Namespace) -> Path:
    if args.root:
        return args.root
    if getattr(args, "system", False):  # root on the box: never the admin layer (docs/security.md)
        from device.commands.usb_import import root_config

        return root_config(args).data_dir
    from device.commands import load_cli_config

    return load_cli_config(args).data_dir


def _make_box(args: argparse.Namespace):
    from device.control import socket_path
    from device.errors import UserFacingError
    from device.update.announce import BoxAnnouncer, PrintAnnouncer
    from device.update.box import Box, Seams, box_compatible
    from device.update.factory import CIRCLE_LOCK, real_box
    from device.update.keys import KeyFileError, load_trusted_keys
    from device.update.seams import circle_running_from_lock

    root = _root(args)
    try:
        if args.system:
            box = real_box(root, BoxAnnouncer(socket_path(root)), args.keys_dir, args.pubkey)  # the box speaks
        else:
            seams = Seams(
                announcer=PrintAnnouncer(),
                circle_running=circle_running_from_lock(args.circle_lock or root / CIRCLE_LOCK),
            )
            if args.restart_cmd:
                seams.restart = lambda kind: subprocess.run(shlex.split(args.restart_cmd), check=False)
            if args.health_cmd:
                seams.health = lambda: subprocess.run(shlex.split(args.health_cmd), check=False).returncode == 0
            box = Box(root=root, trusted_keys=load_trusted_keys(args.keys_dir, args.pubkey), seams=seams)
    except KeyFileError as exc:
        raise UserFacingError(str(exc)) from exc
    if not box.trusted_keys:
        raise UserFacingError("no trusted public keys (give --pubkey or --keys-dir)")
    box.compatible = args.compatible or box_compatible()
    box.ready_timeout_s = args.ready_timeout
    # Nothing to watch without a real health check: no point waiting.
    box.stay_up_s = args.stay_up if (args.system or args.health_cmd) else 0.0
    return box


def _keygen(args: argparse.Namespace) -> int:
    from device.errors import UserFacingError
    from device.update.keys import DEFAULT_KEYS_DIR, KeyFileError, generate_keypair, key_id, load_public_key

    try:
        priv, pub = generate_keypair(args.out, args.name)
    except KeyFileError as exc:
        raise UserFacingError(str(exc)) from exc
    print(f"private key: {priv} (mode 0600; keep it off the box, back it up offline)")
    print(
        f"public key:  {pub} (key id {key_id(load_public_key(pub))}; "
        f"the image build puts it in {DEFAULT_KEYS_DIR}: ./image_build.sh ... --pubkey {pub})"
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    from device.errors import UserFacingError
    from device.update.builder import BuildError, build_bundle, files_of_dir
    from device.update.keys import KeyFileError, load_private_key
    from device.update.manifest import DEFAULT_COMPATIBLE

    if sum(x is not None for x in (args.src, args.script, getattr(args, "course", None))) != 1:
        raise UserFacingError("give either a source directory, or --script CIRCLE, or --course COURSE "
                              "(an id or a .yaml file)")
    if getattr(args, "course", None) is not None and args.kind != "content":
        raise UserFacingError("a course goes in a content bundle: use --kind content with --course")
    import tempfile

    try:
        key = load_private_key(args.key)
        work = tempfile.TemporaryDirectory(prefix="circlebox-bundle-")
    except (KeyFileError, OSError) as exc:
        raise UserFacingError(str(exc)) from exc
    try:
        if getattr(args, "course", None) is not None:
            files = _files_of_course(args)
        else:
            files = _files_of_circle(args) if args.script else _files_of_src(args, Path(work.name), files_of_dir)
        manifest = build_bundle(
            args.out,
            files,
            key,
            kind=args.kind,
            version=args.version,
            min_installed=args.min_installed,
            description=args.description,
            compatible=args.compatible or DEFAULT_COMPATIBLE,
        )
    except (BuildError, KeyFileError, OSError) as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        work.cleanup()
    print(
        f"{args.out}: {manifest.kind} version {manifest.version} for {manifest.compatible}, "
        f"{len(manifest.files)} files, {manifest.total_size} bytes"
    )
    return 0


def _files_of_src(args: argparse.Namespace, work: Path, files_of_dir) -> dict[str, Path]:
    """A source folder's files: a language pack made ready for the box (its recordings levelled
    at the box's rate and loudness, from the config), Piper voices checked, anything else as is."""
    if args.kind == "language_pack":
        from device.commands import load_cli_config
        from device.update.pack_builder import build_language_packs

        config = load_cli_config(args)
        files = build_language_packs(args.src, work, sample_rate=config.audio.sample_rate,
                                     loudness_lufs=config.audio.loudness_lufs, voice_dirs=config.voice_dirs)
        languages = sorted({path.split("/")[0] for path in files})
        print(f"language packs: {', '.join(languages)} ({len(files) - len(languages)} recordings at "
              f"{config.audio.sample_rate} Hz)")
        return files
    if args.kind == "voice":
        from device.update.pack_builder import build_voices

        return build_voices(args.src)
    return files_of_dir(args.src)


def _files_of_circle(args: argparse.Namespace) -> dict[str, Path]:
    """The circle `--script` names, found as `circlebox render` finds it (the same resolver and
    data folder), with the sounds render made for it (its cache, or --cache)."""
    from device.commands import load_cli_config
    from device.content import resolve_circle
    from device.script import ScriptError
    from device.system_prompts import SYSTEM_SET
    from device.update.builder import BuildError, files_of_circle

    data_dir = load_cli_config(args).data_dir
    try:
        source = resolve_circle(args.script, data_dir)
    except ScriptError as exc:
        raise BuildError(str(exc)) from exc
    cache = args.cache or source.cache
    files = files_of_circle(source.loaded, cache)
    print(f"circle: {source.describe()}")
    print(f"sounds: {cache}")
    if f"cache/sets/{SYSTEM_SET}.json" not in files:
        print("note: the box's own prompts (setup code, self-test) are not in this cache, so the bundle does not "
              "carry them; a box that has none of its own needs `circlebox render --system-only` first")
    return files


def _files_of_course(args: argparse.Namespace) -> dict[str, Path]:
    """The course `--course` names (courses/<file>) and every circle it plays, each with the
    sounds `circlebox render` made for it, found as the box finds them (device.course)."""
    from device.commands import load_cli_config
    from device.content import resolve_circle
    from device.course import CourseError, check_course_circles, resolve_course
    from device.script import ScriptError
    from device.update.builder import BuildError, files_of_circle

    data_dir = load_cli_config(args).data_dir
    try:
        source = resolve_course(args.course, data_dir)
    except CourseError as exc:
        raise BuildError(str(exc)) from exc
    problems = check_course_circles(source.course, data_dir)
    if problems:
        raise BuildError(f"{source.loaded.path}: " + "\n  ".join(problems))
    assert source.loaded.path is not None
    files: dict[str, Path] = {f"courses/{source.loaded.path.name}": source.loaded.path}
    print(f"course: {source.describe()}")
    for name in sorted(source.course.circles()):
        try:
            circle = resolve_circle(name, data_dir)
        except ScriptError as exc:
            raise BuildError(str(exc)) from exc
        files.update(files_of_circle(circle.loaded, args.cache or circle.cache))
        print(f"circle: {circle.describe()}")
    return files


def _verify(args: argparse.Namespace) -> int:
    from device.errors import UserFacingError
    from device.update.box import Box
    from device.update.errors import Refusal
    from device.update.installer import verify_bundle
    from device.update.keys import KeyFileError, load_trusted_keys

    try:
        keys = load_trusted_keys(args.keys_dir, args.pubkey)
    except KeyFileError as exc:
        raise UserFacingError(str(exc)) from exc
    try:
        manifest = verify_bundle(args.file, Box(root=Path("."), trusted_keys=keys), args.compatible)
    except Refusal as exc:
        print(f"{args.file}: REFUSED {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        raise UserFacingError(f"{args.file}: {exc.strerror or exc}") from exc
    print(
        f"{args.file}: OK: {manifest.kind} version {manifest.version} "
        f"(needs {manifest.min_installed_version}+) for {manifest.compatible}, "
        f"{len(manifest.files)} files, {manifest.total_size} bytes, created {manifest.created}"
    )
    return 0


def _apply(args: argparse.Namespace) -> int:
    from device.update.installer import apply_bundle

    result = apply_bundle(args.file, _make_box(args))
    print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if result.ok else 1


def _finish(args: argparse.Namespace) -> int:
    from device.update.installer import finish_pending

    results = finish_pending(_make_box(args))
    for result in results:
        print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if all(r.ok for r in results) else 1


def _status(args: argparse.Namespace) -> int:
    from device.update.box import box_compatible
    from device.update.state import load_last_result, load_state

    root = _root(args)
    state = load_state(root)
    print(
        json.dumps(
            {
                "compatible": box_compatible(),
                "root": str(root),
                **state.model_dump(mode="json"),
                "last_result": load_last_result(root),
            },
            indent=1,
            sort_keys=True,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m device.commands.bundle ...`: the updater alone, without the other commands
    (what the crash tests run, and a fallback on a box whose other commands are broken)."""
    from device.errors import UserFacingError

    parser = argparse.ArgumentParser(prog="circlebox")
    parser.add_argument("--config", metavar="FILE")
    parser.add_argument("--data", metavar="DIR")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserFacingError as exc:
        print(f"circlebox: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
