"""First-time setup (setup code + new password), login, logout, password change."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from local_admin import state
from local_admin.i18n import gettext as _
from local_admin.security import password_problem

bp = Blueprint("auth", __name__)


def _client() -> str:
    return request.remote_addr or "unknown"


def _begin(purpose: str, form: dict, errors: dict, template: str, field: str):
    """Reserve one guess for this client (see RateLimiter.begin). The refusal page (429 +
    Retry-After) if this address or the whole network must wait, else None: then the guess
    must be closed with `_check`."""
    lockout = state().limiter.begin(purpose, _client())
    if lockout is None:
        return None
    errors[field] = lockout.message()
    response = render_template(template, form=form, errors=errors, retry_after=lockout.wait_s)
    return response, 429, {"Retry-After": str(lockout.wait_s)}


def _check(purpose: str, check: Callable[[], bool]) -> tuple[bool, int]:
    """Run the guess `_begin` reserved and close it, whatever happens: (right, lockout in
    seconds a wrong guess caused)."""
    right = False
    try:
        right = check()
    finally:
        wait = state().limiter.end(purpose, _client(), right)
    return right, wait


def _start_session(stamp: str | None) -> None:
    session.clear()
    session.permanent = True
    session["admin"] = True
    session["stamp"] = stamp


def _safe_next(target: str | None) -> str:
    if target:
        parsed = urlparse(target)
        if (
            not parsed.scheme
            and not parsed.netloc
            and target.startswith("/")
            and not target.startswith("//")
            and "\\" not in target  # browsers read /\evil.com as //evil.com
            and not any(ord(c) < 32 for c in target)
        ):
            return target
    return url_for("panel.panel")


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    st = state()
    if st.passwords.is_set():
        return redirect(url_for("auth.login"))
    form = {"code": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form["code"] = request.form.get("code", "").strip()
        password = request.form.get("password", "")
        confirm = request.form.get("confirm", "")
        locked = _begin("setup", form, errors, "setup.html", "code")
        if locked:
            return locked
        right, wait = _check("setup", lambda: st.passwords.check_setup_code(form["code"]))
        if not right:
            errors["code"] = _("That is not the box's setup code.") + " " + (
                _("Wait %(seconds)s seconds before the next try.", seconds=wait) if wait
                else _("Check it and try again.")
            )
            headers = {"Retry-After": str(wait)} if wait else {}
            return (
                render_template("setup.html", form=form, errors=errors, retry_after=wait),
                (429 if wait else 400),
                headers,
            )
        problem = password_problem(password, confirm)
        if problem:
            field, message = problem
            errors[field] = message
            return render_template("setup.html", form=form, errors=errors), 400
        _start_session(st.passwords.set_password(password))
        flash(_("The admin password is set. Keep it somewhere safe."), "ok")
        return redirect(url_for("panel.panel"))
    return render_template("setup.html", form=form, errors=errors)


@bp.route("/login", methods=["GET", "POST"])
def login():
    st = state()
    if not st.passwords.is_set():
        return redirect(url_for("auth.setup"))
    form = {"next": request.values.get("next", "")}
    errors: dict[str, str] = {}
    if request.method == "POST":
        locked = _begin("login", form, errors, "login.html", "password")
        if locked:
            return locked
        attempt = request.form.get("password", "")
        right, wait = _check("login", lambda: st.passwords.check_password(attempt))
        if right:
            _start_session(st.passwords.session_stamp())
            return redirect(_safe_next(form["next"]))
        errors["password"] = _("That password is not right.") + " " + (
            _("Wait %(seconds)s seconds before the next try.", seconds=wait) if wait else _("Try again.")
        )
        headers = {"Retry-After": str(wait)} if wait else {}
        return (
            render_template("login.html", form=form, errors=errors, retry_after=wait),
            (429 if wait else 401),
            headers,
        )
    return render_template("login.html", form=form, errors=errors)


@bp.route("/logout", methods=["POST"])
def logout():
    # Ends this session and every other one (phones left logged in on the clinic's Wi-Fi).
    state().passwords.bump_generation()
    session.clear()
    flash(_("Logged out everywhere."), "ok")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
def password():
    st = state()
    errors: dict[str, str] = {}
    if request.method == "POST":
        locked = _begin("login", {}, errors, "password.html", "current")
        if locked:
            return locked
        current = request.form.get("current", "")
        right, wait = _check("login", lambda: st.passwords.check_password(current))
        if not right:
            errors["current"] = _("That is not the current password.")
            if wait:
                errors["current"] += " " + _("Wait %(seconds)s seconds before the next try.", seconds=wait)
            return (
                render_template("password.html", form={}, errors=errors),
                (429 if wait else 400),
                ({"Retry-After": str(wait)} if wait else {}),
            )
        problem = password_problem(
            request.form.get("password", ""), request.form.get("confirm", "")
        )
        if problem:
            field, message = problem
            errors[field] = message
            return render_template("password.html", form={}, errors=errors), 400
        stamp = st.passwords.set_password(request.form["password"])
        _start_session(stamp)  # this browser stays in; every other session ends
        flash(_("Password changed. Other phones and computers are logged out."), "ok")
        return redirect(url_for("system.system"))
    return render_template("password.html", form={}, errors=errors)
