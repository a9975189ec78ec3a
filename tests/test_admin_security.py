"""Access to the admin page: setup code, password, rate limits, CSRF, Host header, sessions."""

from __future__ import annotations

import json
import stat

import pytest
from test_admin_support import (
    PASSWORD,
    FakeClock,
    login,
    make_app,
    ready_client,
    set_password,
    setup_code,
    token,
)

from device.cli import main as cli_main

PAGES = [
    "/panel/",
    "/circles/",
    "/circles/new",
    "/circles/three-step-circle/edit",
    "/settings/",
    "/usage/",
    "/system/",
    "/usage/export.csv",
    "/circles/three-step-circle/export",
]


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def test_first_start_makes_secrets_and_no_default_password(data_dir):
    app = make_app(data_dir)
    secrets = data_dir / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for name in ("setup-code", "admin-session-key"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600
    code = setup_code(data_dir)
    assert len(code) == 6 and code.isdigit()
    assert len(bytes.fromhex((secrets / "admin-session-key").read_text().strip())) == 32
    client = app.test_client()
    for page in PAGES:  # every page leads to the setup page; nothing is shown
        response = client.get(page)
        assert response.status_code == 302 and response.location.endswith("/setup"), page
    assert client.get("/panel/status.json").status_code == 401
    # no password works: there is none
    assert client.get("/login").location.endswith("/setup")


def test_existing_secrets_are_kept(data_dir):
    (data_dir / "secrets").mkdir(parents=True, mode=0o700)
    (data_dir / "secrets" / "setup-code").write_text("123456\n")
    key = "ab" * 32
    (data_dir / "secrets" / "admin-session-key").write_text(key + "\n")
    app = make_app(data_dir)
    assert setup_code(data_dir) == "123456"
    assert app.config["SECRET_KEY"] == bytes.fromhex(key)


def test_setup_with_the_code_sets_a_hashed_password_and_consumes_the_code(data_dir):
    app = make_app(data_dir)
    client = app.test_client()
    code = setup_code(data_dir)
    response = set_password(client, data_dir)
    assert response.status_code == 302 and response.location.endswith("/panel/")
    record = json.loads((data_dir / "admin" / "password.json").read_text())
    assert record["hash"].startswith("scrypt:") and PASSWORD not in record["hash"]
    assert stat.S_IMODE((data_dir / "admin" / "password.json").stat().st_mode) == 0o600
    assert not (data_dir / "secrets" / "setup-code").exists()
    assert client.get("/panel/").status_code == 200
    # the code is spent: the setup page is gone, and the old code sets nothing
    other = app.test_client()
    assert other.get("/setup").location.endswith("/login")
    attempt = other.post(
        "/setup",
        data={
            "csrf_token": token(other, "/login"),
            "code": code,
            "password": "another password 123",
            "confirm": "another password 123",
        },
    )
    assert attempt.status_code == 302 and attempt.location.endswith("/login")
    assert login(other, "another password 123").status_code == 401
    assert login(other).status_code == 302


def test_no_access_without_login(data_dir):
    app = make_app(data_dir)
    set_password(app.test_client(), data_dir)
    client = app.test_client()
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 302 and "/login" in response.location, page
    assert client.get("/panel/status.json").status_code == 401
    tok = token(client, "/login")
    assert (
        client.post("/panel/press", data={"csrf_token": tok, "action": "next"}).status_code == 302
    )
    assert (
        client.post(
            "/panel/press", json={"action": "next"}, headers={"X-CSRFToken": tok}
        ).status_code
        == 401
    )


def test_wrong_setup_code_is_refused_and_slowed(data_dir):
    clock = FakeClock()
    app = make_app(data_dir, clock=clock)
    client = app.test_client()
    code = setup_code(data_dir)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    def attempt(value):
        return client.post(
            "/setup",
            data={
                "csrf_token": token(client, "/setup"),
                "code": value,
                "password": PASSWORD,
                "confirm": PASSWORD,
            },
        )

    first = attempt(wrong)
    assert first.status_code == 400 and "not the box" in first.get_data(as_text=True)
    assert attempt(wrong).status_code == 400
    third = attempt(wrong)
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
    locked = attempt(code)  # even the right code is refused while locked out
    assert locked.status_code == 429 and "Wait" in locked.get_data(as_text=True)
    assert not (data_dir / "admin" / "password.json").exists()
    clock.advance(int(third.headers["Retry-After"]))
    fourth = attempt(wrong)
    assert int(fourth.headers["Retry-After"]) > int(third.headers["Retry-After"])  # growing delays
    clock.advance(int(fourth.headers["Retry-After"]))
    assert attempt(code).status_code == 302


def test_repeated_bad_passwords_are_refused_and_slowed(data_dir):
    clock = FakeClock()
    app = make_app(data_dir, clock=clock)
    set_password(app.test_client(), data_dir)
    client = app.test_client()
    assert login(client, "wrong one").status_code == 401
    assert login(client, "wrong two").status_code == 401
    third = login(client, "wrong three")
    assert third.status_code == 429
    delays = [int(third.headers["Retry-After"])]
    assert login(client).status_code == 429  # the right password waits too
    assert client.get("/panel/").status_code == 302
    for _ in range(3):
        clock.advance(delays[-1])
        response = login(client, "still wrong")
        assert response.status_code == 429
        delays.append(int(response.headers["Retry-After"]))
    assert delays == sorted(delays) and delays[-1] > delays[0]
    clock.advance(delays[-1])
    assert login(client).status_code == 302
    assert client.get("/panel/").status_code == 200


def test_forms_without_csrf_token_are_refused(data_dir):
    app = make_app(data_dir)
    client = app.test_client()
    response = client.post(
        "/setup", data={"code": setup_code(data_dir), "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status_code == 400 and "security token" in response.get_data(as_text=True)
    assert not (data_dir / "admin" / "password.json").exists()
    client = ready_client(app, data_dir)
    before = (data_dir / "admin-config.yaml").exists()
    response = client.post(
        "/settings/",
        data={
            "section": "box",
            "box_name": "evil",
            "box_site": "",
            "volume": "50",
            "volume_cap": "90",
        },
    )
    assert response.status_code == 400
    assert (data_dir / "admin-config.yaml").exists() == before
    # JSON requests need the token in a header
    assert client.post("/panel/press", json={"action": "next"}).status_code == 400
    wrong = client.post("/panel/press", json={"action": "next"}, headers={"X-CSRFToken": "nope"})
    assert wrong.status_code == 400


def test_foreign_host_header_is_refused(data_dir):
    app = make_app(data_dir, admin={"allowed_hosts": ["circlebox.clinic.lan"]})
    client = ready_client(app, data_dir)
    for host in ("evil.example.com", "clinic-north.evil.com", "8.8.8.8"):
        response = client.get("/panel/", headers={"Host": host})
        assert response.status_code == 400, host
        assert client.get("/login", headers={"Host": host}).status_code == 400
    for host in (
        "localhost",
        "127.0.0.1:8080",
        "clinic-north.local",
        "clinic-north",
        "circlebox.clinic.lan:8080",
        "[::1]:8080",
    ):
        # (the test client keeps the cookie for "localhost" only: other names see the login page)
        assert client.get("/login", headers={"Host": host}).status_code == 200, host
    assert client.get("/panel/", headers={"Host": "localhost"}).status_code == 200


def test_session_cookie_is_httponly_and_samesite(data_dir):
    app = make_app(data_dir)
    response = set_password(app.test_client(), data_dir)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = app.test_client().get("/login")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_logout_ends_every_session(data_dir):
    app = make_app(data_dir)
    phone = ready_client(app, data_dir)
    laptop = app.test_client()
    assert login(laptop).status_code == 302
    assert laptop.get("/panel/").status_code == 200
    phone.post("/logout", data={"csrf_token": token(phone, "/panel/")})
    assert phone.get("/panel/").status_code == 302
    assert laptop.get("/panel/").status_code == 302  # the other session ended too


def test_password_change_ends_other_sessions(data_dir):
    app = make_app(data_dir)
    phone = ready_client(app, data_dir)
    laptop = app.test_client()
    login(laptop)
    bad = phone.post(
        "/password",
        data={
            "csrf_token": token(phone, "/password"),
            "current": PASSWORD,
            "password": "short",
            "confirm": "short",
        },
    )
    assert bad.status_code == 400 and "at least 10" in bad.get_data(as_text=True)
    new = "green hills evening walk"
    ok = phone.post(
        "/password",
        data={
            "csrf_token": token(phone, "/password"),
            "current": PASSWORD,
            "password": new,
            "confirm": new,
        },
    )
    assert ok.status_code == 302
    assert phone.get("/panel/").status_code == 200  # this browser stays in
    assert laptop.get("/panel/").status_code == 302  # every other one is out
    assert login(laptop, PASSWORD).status_code == 401
    assert login(laptop, new).status_code == 302


def test_setup_form_refuses_weak_or_mismatched_passwords(data_dir):
    app = make_app(data_dir)
    client = app.test_client()
    for password, confirm, message in (
        ("short", "short", "at least 10"),
        ("long enough password", "different password", "not the same"),
    ):
        response = client.post(
            "/setup",
            data={
                "csrf_token": token(client, "/setup"),
                "code": setup_code(data_dir),
                "password": password,
                "confirm": confirm,
            },
        )
        assert response.status_code == 400 and message in response.get_data(as_text=True)
        assert 'aria-invalid="true"' in response.get_data(as_text=True)
    assert (data_dir / "secrets" / "setup-code").exists()


def test_setup_code_command(data_dir, capsys):
    assert cli_main(["--data", str(data_dir), "setup-code"]) == 0
    code = capsys.readouterr().out.strip()
    assert code == setup_code(data_dir)
    app = make_app(data_dir)
    set_password(app.test_client(), data_dir)
    assert cli_main(["--data", str(data_dir), "setup-code"]) == 1
    assert "already set" in capsys.readouterr().out
    client = app.test_client()
    login(client)
    assert client.get("/panel/").status_code == 200
    assert cli_main(["--data", str(data_dir), "setup-code", "--reset"]) == 0
    new_code = capsys.readouterr().out.split("New setup code: ")[1].split()[0]
    assert new_code == setup_code(data_dir)
    assert client.get("/panel/").location.endswith("/setup")  # everyone is out, setup again
    assert set_password(app.test_client(), data_dir, "a brand new password").status_code == 302


def test_login_only_returns_to_pages_of_the_box(data_dir):
    app = make_app(data_dir)
    set_password(app.test_client(), data_dir)
    for target, expected in (("/usage/", "/usage/"), ("//evil.example/x", "/panel/"),
                             ("/\\evil.example", "/panel/"), ("https://evil.example/", "/panel/")):
        client = app.test_client()
        response = client.post("/login", data={"csrf_token": token(client, "/login"),
                                               "password": PASSWORD, "next": target})
        assert response.status_code == 302 and response.location == expected, target
