"""The box's local admin page: a Flask app served by waitress as its own service.

`create_app(config, control=..., testing=...)` builds it. Every page needs the admin password,
except the first-time setup page (which needs the one-time setup code) and the login page.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, abort, flash, jsonify, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from device.config import Config
from device.control import socket_path
from local_admin.backends import Control
from local_admin.i18n import gettext as _
from local_admin.jobs import RenderQueue
from local_admin.limits import FORM_BYTES, VISITOR_BYTES, body_limit, too_big_message
from local_admin.security import (
    HostCheck,
    PasswordStore,
    RateLimiter,
    ensure_session_key,
    logged_in,
)

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"auth.setup", "auth.login", "static"}


def _run_system_command(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


@dataclass
class AdminState:
    """Everything the pages share; one per app."""

    config: Config
    passwords: PasswordStore
    limiter: RateLimiter
    hosts: HostCheck
    control: Control
    renders: RenderQueue = field(default_factory=RenderQueue)
    preview_lock: threading.Lock = field(default_factory=threading.Lock)
    config_lock: threading.Lock = field(default_factory=threading.Lock)
    run_system: Any = _run_system_command
    render_script: Any = None  # audio.render.render_script unless a test gives its own
    render_course: Any = None  # device.course_play.render_announcements unless a test gives its own
    _voices: tuple[float, Any] | None = None

    def voices(self, max_age_s: float = 60.0) -> tuple[list, list[str]]:
        """(voices, problems), scanned at most once a minute (scanning walks every package)."""
        import time

        cached = self._voices
        if cached is None or time.monotonic() - cached[0] > max_age_s:
            from audio.voices import scan_voices

            cached = (time.monotonic(), scan_voices(self.config.voice_dirs))
            self._voices = cached
        return cached[1]

    @property
    def data_dir(self):
        return self.config.data_dir


def state() -> AdminState:
    from flask import current_app

    return current_app.extensions["circlebox"]


def allowed_host_names(config: Config) -> list[str]:
    names = list(config.admin.allowed_hosts)
    names.append(config.box.name)
    return [str(n) for n in names]


def _real_render_script(*args: Any, **kwargs: Any) -> Any:
    from audio.render import render_script  # imports Piper lazily, in the worker thread

    return render_script(*args, **kwargs)


def create_app(
    config: Config,
    *,
    control: Any = None,
    testing: bool = False,
    limiter: RateLimiter | None = None,
    render_script: Any = None,
    run_system: Any = None,
) -> Flask:
    """The admin app. `control` replaces the runtime's control client, `limiter` the rate
    limiter (tests pass a clock), `render_script` the renderer and `run_system` the runner of
    reboot/poweroff commands (tests record what would run)."""
    from local_admin import auth, box_messages, circles, courses, panel, settings, studio, system, usage

    app = Flask(__name__)
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    app.config.update(
        SECRET_KEY=ensure_session_key(data_dir),
        TESTING=testing,
        MAX_CONTENT_LENGTH=FORM_BYTES,  # _guard sets each request's own (local_admin.limits)
        SESSION_COOKIE_NAME="circlebox_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Plain http on the clinic LAN or the box's hotspot: a Secure cookie would never be sent.
        SESSION_COOKIE_SECURE=config.admin.https,
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session: a long edit must not expire its form
        WTF_CSRF_SSL_STRICT=False,
        TEMPLATES_AUTO_RELOAD=False,
    )

    @app.before_request
    def _host():
        # First of all, before CSRF and login: a foreign Host (DNS rebinding) gets nothing.
        if not state().hosts.allowed(request.host):
            abort(400, description=_("This address is not one of the box's own names."))

    @app.before_request
    def _guard():
        # Registered before CSRFProtect, so it runs before anything reads the body: the size
        # limit for this route (small unless logged in) and the login check come first.
        st = state()
        is_in = logged_in(session, st.passwords)
        request.max_content_length = body_limit(request.endpoint, is_in)
        if (request.content_length or 0) > request.max_content_length:
            abort(413)
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if not st.passwords.is_set():
            return _need("auth.setup")
        if not is_in:
            session.pop("admin", None)  # keep the CSRF secret: the login form still works
            session.pop("stamp", None)
            return _need("auth.login")
        return None

    from local_admin import i18n

    i18n.init_app(app)
    csrf = CSRFProtect(app)
    # streams its body and checks the token itself (CSRFProtect would spool the whole form)
    csrf.exempt("local_admin.system.upload_bundle")
    passwords = PasswordStore(data_dir)
    passwords.setup_code()  # first start: make sure there is a code to set the password with
    _finish_interrupted_saves(data_dir)
    app.extensions["circlebox"] = AdminState(
        config=config,
        passwords=passwords,
        limiter=limiter or RateLimiter(),
        hosts=HostCheck(allowed_host_names(config)),
        control=Control(socket_path(data_dir), client=control),
        run_system=run_system or _run_system_command,
        render_script=render_script or _real_render_script,
    )

    for bp in (auth.bp, circles.bp, courses.bp, studio.bp, box_messages.bp, panel.bp, settings.bp, usage.bp,
               system.bp):
        app.register_blueprint(bp)

    @app.after_request
    def _headers(response):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
            "script-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
            "base-uri 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        if _wants_json():
            return jsonify(error=f"refused: {exc.description}"), 400
        return render_template(
            "error.html",
            title=_("Form refused"),
            message=_("This form was refused because its security token is "
                      "missing or out of date. Go back, reload the page and try again; "
                      "nothing was changed."),
        ), 400

    @app.errorhandler(400)
    def _bad(exc):
        if _wants_json():
            return jsonify(error=exc.description), 400
        return render_template("error.html", title=_("Bad request"), message=exc.description), 400

    @app.errorhandler(404)
    def _missing(exc):
        return render_template(
            "error.html", title=_("Not found"), message=_("There is no such page or circle.")
        ), 404

    @app.errorhandler(413)
    def _too_big(exc):
        message = too_big_message(request.max_content_length or VISITOR_BYTES)
        if _wants_json():
            return jsonify(error=message), 413
        return render_template("error.html", title=_("File too big"), message=message), 413

    @app.context_processor
    def _globals():
        st = state()
        return {"box_name": st.config.box.name, "logged_in": bool(session.get("admin"))}

    @app.route("/")
    def index():
        return redirect(url_for("panel.panel"))

    return app


def _finish_interrupted_saves(data_dir) -> None:
    """A power cut between a save's new rendered set and its switch: switch now (see store)."""
    from local_admin import store

    try:
        for script_id in store.finish_interrupted_saves(data_dir):
            log.warning("finished the save of %s that a restart interrupted", script_id)
    except OSError as exc:  # never keep the page from starting
        log.error("could not finish interrupted saves: %s", exc)


def _wants_json() -> bool:
    return (
        request.is_json
        or request.path.endswith(".json")
        or request.accept_mimetypes.best == "application/json"
    )


def _need(endpoint: str):
    if _wants_json():
        if endpoint == "auth.setup":
            return jsonify(error="no admin password yet: open the setup page"), 401
        return jsonify(error="log in first"), 401
    if endpoint == "auth.login":
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.login", next=target))
    return redirect(url_for(endpoint))


__all__ = ["create_app", "flash", "state"]
