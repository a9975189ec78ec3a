"""`circlebox admin` (serve the admin page with waitress) and `circlebox setup-code`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="serve the local admin page (its own service)")
    admin.add_argument(
        "--host", help="address to listen on (default: the config's admin.host)"
    )
    admin.add_argument("--port", type=int, help="port (default: the config's admin.port)")
    admin.add_argument("--threads", type=int, default=4, help="request threads (default 4)")
    admin.set_defaults(handler=run_admin)

    code = sub.add_parser("setup-code", help="print the one-time code that sets the admin password")
    code.add_argument(
        "--reset",
        action="store_true",
        help="forget the admin password (logs everyone out) and make a new setup code",
    )
    code.set_defaults(handler=setup_code)


def _listen_address(args: argparse.Namespace, config) -> tuple[str, int]:
    from device.errors import UserFacingError

    host = args.host or config.admin.host
    port = args.port if args.port is not None else config.admin.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserFacingError(f"admin.port: must be a port number, not {port!r}")
    return host, port


def run_admin(args: argparse.Namespace) -> int:
    from device.commands import load_cli_config
    from local_admin import create_app
    from local_admin.serving import make_server

    config = load_cli_config(args)  # the admin and dhis2 sections are checked by their models
    host, port = _listen_address(args, config)
    app = create_app(config)
    # connections, time and body size per route are limited before anyone logs in
    server = make_server(app, host, port, threads=args.threads)
    real_port = server.effective_port if hasattr(server, "effective_port") else port
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    print(
        f"circlebox admin: http://{shown}:{real_port}/  "
        f"(also http://{config.box.name}.local:{real_port}/ on the box's network)",
        flush=True,
    )
    passwords = app.extensions["circlebox"].passwords
    if not passwords.is_set():
        print(
            "circlebox admin: no password yet; open the page and enter the setup code "
            "(`circlebox setup-code`)",
            flush=True,
        )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def setup_code(args: argparse.Namespace) -> int:
    from device.commands import load_cli_config
    from local_admin.security import PasswordStore

    config = load_cli_config(args)
    store = PasswordStore(config.data_dir)
    if args.reset:
        code = store.reset()
        print(
            f"The admin password is forgotten and everyone is logged out.\nNew setup code: {code}"
        )
        print("Open the admin page and set a new password with this code.")
        return 0
    code = store.setup_code()
    if code is None:
        print(
            "An admin password is already set, so there is no setup code.\n"
            "To reset it (this logs everyone out): circlebox setup-code --reset"
        )
        return 1
    print(code)
    return 0
