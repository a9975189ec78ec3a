"""device/firstboot.py and `circlebox firstboot`: per-box secrets, made once."""

from __future__ import annotations

import configparser
import getpass
import grp
import os
import stat
from pathlib import Path

import pytest

from device.firstboot import (
    UNAMBIGUOUS,
    Firstboot,
    FirstbootError,
    new_hotspot_passphrase,
    new_setup_code,
    render_hotspot_profile,
)

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "firmware_config" / "network" / "circlebox-hotspot.nmconnection"
SECRETS = ("setup-code", "admin-session-key", "hotspot-passphrase", ".done")


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make(tmp_path: Path, **kw) -> Firstboot:
    kw.setdefault("template", TEMPLATE)
    kw.setdefault("owners", None)
    return Firstboot(tmp_path / "data", **kw)


def test_creates_every_secret_private_and_well_formed(tmp_path):
    boot = make(tmp_path)
    changed = boot.run()
    data = tmp_path / "data"
    for name in SECRETS:
        path = data / "secrets" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert name in changed
    assert stat.S_IMODE((data / "secrets").stat().st_mode) == 0o750
    assert stat.S_IMODE((data / "network").stat().st_mode) == 0o700
    code = (data / "secrets" / "setup-code").read_text().strip()
    assert len(code) == 6 and code.isdigit()
    key = bytes.fromhex((data / "secrets" / "admin-session-key").read_text().strip())
    assert len(key) == 32
    box_id = (data / "box-id").read_text().strip()
    assert len(box_id) == 6 and set(box_id) <= set(UNAMBIGUOUS)
    # No stray temp files from the atomic writes.
    assert not [p for p in data.rglob("*.tmp")]


def test_second_run_changes_nothing(tmp_path):
    boot = make(tmp_path)
    boot.run()
    before = snapshot(tmp_path / "data")
    assert make(tmp_path).run() == []
    assert snapshot(tmp_path / "data") == before


def test_completes_a_half_finished_run_and_keeps_what_exists(tmp_path):
    make(tmp_path).run()
    data = tmp_path / "data"
    code = (data / "secrets" / "setup-code").read_text()
    (data / "secrets" / "admin-session-key").unlink()
    (data / "secrets" / ".done").unlink()
    (data / "secrets" / "setup-code").chmod(0o644)  # repaired, not replaced
    changed = make(tmp_path).run()
    assert set(changed) == {"admin-session-key", ".done", "mode setup-code"}
    assert (data / "secrets" / "setup-code").read_text() == code
    assert stat.S_IMODE((data / "secrets" / "setup-code").stat().st_mode) == 0o600


def test_hotspot_profile_carries_the_passphrase(tmp_path):
    boot = make(tmp_path)
    boot.run()
    data = tmp_path / "data"
    profile = data / "network" / "circlebox-hotspot.nmconnection"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(profile.read_text())
    passphrase = (data / "secrets" / "hotspot-passphrase").read_text().strip()
    assert parser["wifi-security"]["psk"] == passphrase
    assert parser["wifi-security"]["key-mgmt"] == "wpa-psk"
    assert 8 <= len(passphrase) <= 63  # WPA2 limits
    box_id = (data / "box-id").read_text().strip()
    assert parser["wifi"]["ssid"] == f"Circlebox-{box_id}"
    assert parser["wifi"]["mode"] == "ap"
    assert "@" not in parser["connection"]["uuid"]
    assert boot.summary()["hotspot passphrase"] == passphrase
    # A changed template is picked up by the next run; the passphrase stays.
    tmpl = tmp_path / "t.nmconnection"
    tmpl.write_text(TEMPLATE.read_text().replace("channel=6", "channel=11"))
    assert make(tmp_path, template=tmpl).run() == ["circlebox-hotspot.nmconnection"]
    assert "channel=11" in profile.read_text() and passphrase in profile.read_text()


def test_unknown_placeholder_is_refused():
    with pytest.raises(FirstbootError):
        render_hotspot_profile("[wifi]\nssid=@SSID@\nfoo=@NEW@\n", "ABCDEF", "x" * 12)


def test_missing_template_is_an_error_not_a_silent_skip(tmp_path):
    with pytest.raises(FirstbootError):
        make(tmp_path, template=tmp_path / "missing").run()


def test_secrets_differ_between_boxes(tmp_path):
    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    a.run()
    b.run()
    for name in ("admin-session-key", "hotspot-passphrase"):
        assert a._read_secret(name) != b._read_secret(name)


def test_generators_are_easy_to_read():
    for _ in range(200):
        phrase = new_hotspot_passphrase()
        assert len(phrase) == 14 and phrase.count("-") == 2
        assert not set(phrase) & set("0o1il5s2zbuv8")
        assert len(new_setup_code()) == 6


def test_owners_are_applied(tmp_path):
    me = getpass.getuser()
    group = grp.getgrgid(os.getgid()).gr_name
    boot = make(tmp_path, owners={"setup-code": (me, group)})
    boot.run()
    st = (tmp_path / "data" / "secrets" / "setup-code").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    with pytest.raises(FirstbootError):
        make(tmp_path / "x", owners={"setup-code": ("no-such-user-cb", group)}).run()


def firstboot_main(argv: list[str]) -> int:
    """`circlebox ARGS` with only the firstboot subcommand registered (the same global options
    as device/cli.py), so this test does not depend on the other commands' modules."""
    import argparse

    from device.commands import firstboot

    parser = argparse.ArgumentParser(prog="circlebox")
    parser.add_argument("--config")
    parser.add_argument("--data")
    firstboot.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_module_is_registered():
    from device import cli

    assert "device.commands.firstboot" in cli.COMMAND_MODULES


def test_cli_firstboot(tmp_path, capsys):
    main = firstboot_main
    data = tmp_path / "data"
    args = ["--data", str(data), "firstboot", "--no-chown", "--template", str(TEMPLATE)]
    assert main(args) == 0
    assert "setup-code" in capsys.readouterr().out
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*args, "--show"]) == 0
    out = capsys.readouterr().out
    assert (data / "secrets" / "setup-code").read_text().strip() in out
    # The admin page used the code up: --show says so and does not make a new one.
    (data / "secrets" / "setup-code").unlink()
    assert main([*args, "--show"]) == 0
    assert "setup code: used" in capsys.readouterr().out
    assert not (data / "secrets" / "setup-code").exists()


def test_show_before_firstboot_is_an_error(tmp_path):
    from device.errors import UserFacingError

    with pytest.raises(UserFacingError, match="no secrets yet"):
        firstboot_main(["--data", str(tmp_path), "firstboot", "--show"])


# --- read-only root ---------------------------------------------------------------------------

STOCK = ("console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 "
         "fsck.repair=yes rootwait\n")


def test_seal_root_adds_overlayroot_once(tmp_path):
    from device.firstboot import OVERLAY_PARAM, seal_root

    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text(STOCK)
    assert seal_root(cmdline) is True
    text = cmdline.read_text()
    assert text == STOCK.strip() + f" {OVERLAY_PARAM}\n"
    assert text.count("\n") == 1  # still one line
    assert seal_root(cmdline) is False
    assert cmdline.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["cmdline.txt"]


def test_seal_root_respects_a_technicians_choice(tmp_path):
    from device.firstboot import seal_root

    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text(STOCK.strip() + " overlayroot=disabled\n")
    assert seal_root(cmdline) is False
    assert "overlayroot=disabled" in cmdline.read_text()
    assert "tmpfs" not in cmdline.read_text()


def test_seal_root_refuses_an_empty_cmdline(tmp_path):
    from device.firstboot import seal_root

    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text("\n")
    with pytest.raises(FirstbootError):
        seal_root(cmdline)
    assert cmdline.read_text() == "\n"


def test_cli_seal_root(tmp_path, capsys):
    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text(STOCK)
    assert firstboot_main(["firstboot", "--seal-root", "--cmdline", str(cmdline)]) == 0
    assert "read-only root from the next boot" in capsys.readouterr().out
    assert "overlayroot=tmpfs:recurse=0" in cmdline.read_text()
    assert not (tmp_path / "data").exists()  # sealing does not make secrets
