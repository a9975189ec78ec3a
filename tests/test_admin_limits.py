"""Limits before login (issue 12, admin side), each attack as the security review made it.

Against the real `circlebox admin` (waitress) over loopback where the server matters: slow
clients holding every connection, large bodies sent before any login, a bundle larger than
the old 21 MB limit, parallel password guesses. With the app alone (test client) where it
does not: hotspot-wide guess cap, sessions across `setup-code --reset`, /panel/press with
JSON that is not an object, recordings on a refused form.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from admin_process import PASSWORD, AdminProcess, half_sent, status_of
from test_admin_support import FakeClock, make_app, ready_client, set_password, setup_code, token

from device.cli import main as cli_main
from device.update.inbox import inbox_dir
from local_admin.limits import MIB, VISITOR_BYTES


@pytest.fixture
def admin(tmp_path):
    with AdminProcess(tmp_path / "data", tmp_path / "tmp") as process:
        yield process


def _close(sockets) -> None:
    for sock in sockets:
        sock.close()


# -- connections and time ---------------------------------------------------------------------


def test_a_login_answers_while_120_slow_clients_hold_connections(admin):
    # the review: 120 requests whose headers never finish; waitress then serves nobody else
    held = half_sent(admin, 120, b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n")
    try:
        browser = admin.browser(timeout=30)
        assert browser.login() == 302
        status, page = browser.request("/system/")
        assert status == 200 and "Last update" in page
    finally:
        _close(held)


def test_slow_bodies_do_not_keep_a_login_out_either(admin):
    # headers complete, the body trickles: the same connections, waiting on the client
    held = half_sent(
        admin, 120,
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: 60000\r\n\r\npassword=",
    )
    try:
        assert admin.browser(timeout=30).login() == 302
    finally:
        _close(held)


# -- body size before login ---------------------------------------------------------------------


def _big_body_head(path: str, length: int, cookie: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {length}\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + "\r\n"
    ).encode()


def test_twenty_20mb_bodies_are_refused_before_they_reach_tmp(admin):
    # the review: 20 connections sending 20 MB put 419 MB into /tmp before any login check
    heads = [_big_body_head(path, 20 * MIB) for path in ("/circles/new", "/login", "/system/update", "/setup")]
    held = []
    try:
        for i in range(20):
            sock = admin.connect()
            sock.sendall(heads[i % len(heads)] + b"--xyz\r\n" + bytes(MIB))
            held.append(sock)
        answers = [status_of(sock) for sock in held]
        assert answers == [413] * 20
        assert admin.tmp_bytes() == 0
    finally:
        _close(held)
    assert admin.browser().login() == 302  # and the page still works


def test_a_visitor_cannot_send_more_than_a_login_form(admin):
    sock = admin.connect()
    try:
        sock.sendall(_big_body_head("/login", VISITOR_BYTES + 1))
        assert status_of(sock) == 413
    finally:
        sock.close()


def test_the_login_guard_runs_before_any_form_is_parsed(tmp_path):
    """No CSRF check (which parses the form) for a visitor: the login page, or 413 first."""
    data_dir = tmp_path / "data"
    app = make_app(data_dir)
    set_password(app.test_client(), data_dir)
    visitor = app.test_client()
    small = visitor.post(
        "/circles/new", data={"s0_recording": (io.BytesIO(b"x" * 1000), "a.wav")},
        content_type="multipart/form-data",
    )
    assert small.status_code == 302 and "/login" in small.location  # not "form refused" (400)
    big = visitor.post(
        "/circles/new", data={"s0_recording": (io.BytesIO(b"x" * (VISITOR_BYTES + 1)), "a.wav")},
        content_type="multipart/form-data",
    )
    assert big.status_code == 413 and "too big" in big.get_data(as_text=True)


def test_a_bundle_bigger_than_the_old_limit_streams_into_the_inbox(admin):
    browser = admin.browser(timeout=120)
    assert browser.login() == 302
    token = browser.token("/system/")
    from test_update_helpers import Keys, good_bundle

    bundle = good_bundle(admin.tmp.parent, Keys(), 3, name="content-3.cbx").read_bytes()
    body = bundle + bytes(40 * MIB)  # over the 21 MB the server took before
    peak = [0]
    done = threading.Event()

    def watch_tmp() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], admin.tmp_bytes())
            done.wait(0.05)

    watcher = threading.Thread(target=watch_tmp)
    watcher.start()
    try:
        status, text = browser.request(
            "/system/update", body,
            {"Content-Type": "application/octet-stream", "X-CSRFToken": token, "Accept": "application/json"},
        )
    finally:
        done.set()
        watcher.join()
    assert status == 200 and "checking the update" in text
    [landed] = inbox_dir(admin.data).glob("*.cbx")
    assert landed.read_bytes() == body
    assert peak[0] < MIB  # nothing of it in /tmp
    # without the token: refused, nothing kept
    status, _text = browser.request(
        "/system/update", bundle, {"Content-Type": "application/octet-stream", "Accept": "application/json"}
    )
    assert status == 400 and len(list(inbox_dir(admin.data).glob("*.cbx"))) == 1


def test_a_visitor_cannot_upload_a_bundle(admin):
    sock = admin.connect()
    try:
        sock.sendall(
            b"POST /system/update HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (16 * MIB)
        )
        assert status_of(sock) == 413
    finally:
        sock.close()
    assert list(inbox_dir(admin.data).glob("*")) == []


# -- guesses ------------------------------------------------------------------------------------


def test_twenty_addresses_do_not_get_twenty_times_the_setup_code_guesses(tmp_path):
    # the review: 20 hotspot addresses x 3 free tries = 60 immediate guesses
    data_dir = tmp_path / "data"
    app = make_app(data_dir, clock=FakeClock())  # the clock stands still: "immediate"
    code = setup_code(data_dir)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    checked = 0
    for n in range(20):
        client = app.test_client()
        address = {"REMOTE_ADDR": f"10.42.0.{10 + n}"}
        for _ in range(3):
            response = client.post(
                "/setup",
                data={"csrf_token": token(client, "/setup"), "code": wrong,
                      "password": PASSWORD, "confirm": PASSWORD},
                environ_base=address,
            )
            page = response.get_data(as_text=True)
            if "That is not the box" in page:
                checked += 1
            else:
                assert response.status_code == 429 and "on this box" in page
    limiter = app.extensions["circlebox"].limiter
    assert checked == limiter.free_total < 20


def test_parallel_wrong_passwords_get_three_tries_not_more(admin):
    # the review: a burst of parallel requests got 5-6 tries past a 3-try limit
    browsers = [admin.browser() for _ in range(12)]
    tokens = [b.token("/login") for b in browsers]
    start = threading.Barrier(len(browsers))

    def guess(i: int) -> tuple[int, str]:
        start.wait()
        return browsers[i].request("/login", f"csrf_token={tokens[i]}&password=wrong+guess+{i}".encode())

    with ThreadPoolExecutor(len(browsers)) as pool:
        answers = list(pool.map(guess, range(len(browsers))))
    assert {status for status, _page in answers} <= {401, 429}
    checked = sum("That password is not right" in page for _status, page in answers)
    refused = sum("Too many wrong tries" in page for _status, page in answers)
    assert checked + refused == len(answers)
    assert 1 <= checked <= 3, [status for status, _page in answers]


# -- sessions -----------------------------------------------------------------------------------


def test_a_logged_out_session_stays_dead_across_setup_code_reset(tmp_path, capsys):
    # the review: logout, `setup-code --reset`, new setup: the old cookie worked again
    data_dir = tmp_path / "data"
    app = make_app(data_dir)
    phone = ready_client(app, data_dir)
    old_cookie = phone.get_cookie("circlebox_admin").value
    phone.post("/logout", data={"csrf_token": token(phone, "/panel/")})
    assert cli_main(["--data", str(data_dir), "setup-code", "--reset"]) == 0
    capsys.readouterr()
    assert set_password(app.test_client(), data_dir, "a brand new password").status_code == 302
    stale = app.test_client()
    stale.set_cookie("circlebox_admin", old_cookie)
    response = stale.get("/panel/")
    assert response.status_code == 302 and "/login" in response.location


# -- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["[1, 2]", '"next"', "5", "null", "{broken"])
def test_press_with_json_that_is_not_an_object_is_a_plain_400(tmp_path, body):
    data_dir = tmp_path / "data"
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    response = client.post(
        "/panel/press", data=body,
        headers={"X-CSRFToken": token(client, "/panel/"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


def test_a_refused_form_keeps_no_recording(tmp_path):
    from test_admin_editor import _wav_bytes, form, three_steps

    data_dir = tmp_path / "data"
    app = make_app(data_dir)
    client = ready_client(app, data_dir)
    tok = token(client, "/circles/new")
    steps = three_steps()
    steps[1]["s1_id"] = steps[2]["s2_id"]  # two steps with one name: the circle is refused
    data = form(tok, steps, op="save")
    data["s0_recording"] = (io.BytesIO(_wav_bytes()), "welcome.wav")
    response = client.post("/circles/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "choose the file again" in response.get_data(as_text=True)
    recordings = data_dir / "scripts" / "recordings"
    assert not recordings.exists() or list(recordings.iterdir()) == []
