"""First-time setup (setup code + new password), login, logout, password change."""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from local_admin import state
from local_admin.security import password_problem

bp = Blueprint("auth", __name__)


def _client() -> str:
    return request.remote_addr or "unknown"


def _locked(purpose: str, form: dict, errors: dict, template: str, field: str):
    """If this client is locked out, the refusal page (429 + Retry-After), else None."""
    wait = state().limiter.retry_after(purpose, _client())
    if not wait:
        return None
    errors[field] = f"Too many wrong tries. Wait {wait} seconds, then try again."
    response = render_template(template, form=form, errors=errors, retry_after=wait)
    return response, 429, {"Retry-After": str(wait)}


def _start_session(generation: int) -> None:
    session.clear()
    session.permanent = True
    session["admin"] = True
    session["gen"] = generation


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
        locked = _locked("setup", form, errors, "setup.html", "code")
        if locked:
            return locked
        password = request.form.get("password", "")
        confirm = request.form.get("confirm", "")
        if not st.passwords.check_setup_code(form["code"]):
            wait = st.limiter.failure("setup", _client())
            errors["code"] = "That is not the box's setup code. " + (
                f"Wait {wait} seconds before the next try." if wait else "Check it and try again."
            )
            headers = {"Retry-After": str(wait)} if wait else {}
            return (
                render_template("setup.html", form=form, errors=errors, retry_after=wait),
                (429 if wait else 400),
                headers,
            )
        problem = password_problem(password, confirm)
        if problem:
            errors["confirm" if "same" in problem else "password"] = problem
            return render_template("setup.html", form=form, errors=errors), 400
        st.limiter.success("setup", _client())
        generation = st.passwords.set_password(password)
        _start_session(generation)
        flash("The admin password is set. Keep it somewhere safe.", "ok")
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
        locked = _locked("login", form, errors, "login.html", "password")
        if locked:
            return locked
        if st.passwords.check_password(request.form.get("password", "")):
            st.limiter.success("login", _client())
            _start_session(st.passwords.generation() or 0)
            return redirect(_safe_next(form["next"]))
        wait = st.limiter.failure("login", _client())
        errors["password"] = "That password is not right. " + (
            f"Wait {wait} seconds before the next try." if wait else "Try again."
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
    flash("Logged out everywhere.", "ok")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
def password():
    st = state()
    errors: dict[str, str] = {}
    if request.method == "POST":
        locked = _locked("login", {}, errors, "password.html", "current")
        if locked:
            return locked
        if not st.passwords.check_password(request.form.get("current", "")):
            wait = st.limiter.failure("login", _client())
            errors["current"] = "That is not the current password."
            if wait:
                errors["current"] += f" Wait {wait} seconds before the next try."
            return (
                render_template("password.html", form={}, errors=errors),
                (429 if wait else 400),
                ({"Retry-After": str(wait)} if wait else {}),
            )
        problem = password_problem(
            request.form.get("password", ""), request.form.get("confirm", "")
        )
        if problem:
            errors["confirm" if "same" in problem else "password"] = problem
            return render_template("password.html", form={}, errors=errors), 400
        st.limiter.success("login", _client())
        generation = st.passwords.set_password(request.form["password"])
        _start_session(generation)  # this browser stays in; every other session ends
        flash("Password changed. Other phones and computers are logged out.", "ok")
        return redirect(url_for("system.system"))
    return render_template("password.html", form={}, errors=errors)
