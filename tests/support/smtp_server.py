"""A real SMTP server (aiosmtpd) for the email channel's tests, run in its own process:

    python -m tests.support.smtp_server --out FILE [--cert C --key K] [--implicit-tls]
        [--user U --password P] [--mode ok|451-once|refuse-auth]

It prints its port once listening and appends every accepted message to FILE as one JSON line
(envelope sender, recipients, the raw message). STARTTLS is offered when a certificate is given
(and required, with AUTH only over TLS, when --user is); --implicit-tls speaks TLS from the
first byte (port 465 style). 451-once answers the first DATA with "451 4.3.0 try again later",
then accepts; refuse-auth answers every AUTH with 535."""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:  # aiosmtpd's controller cannot take port 0: ask the kernel for one
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self, out: str, mode: str, implicit_tls: bool):
        self.out = out
        self.mode = mode
        self.implicit_tls = implicit_tls  # every byte was TLS (session.ssl describes STARTTLS only)
        self.data_calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.data_calls += 1
        if self.mode == "451-once" and self.data_calls == 1:
            return "451 4.3.0 try again later"
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos, "tls": self.implicit_tls or session.ssl is not None,
                                "auth": session.authenticated, "data": envelope.content.decode("utf-8", "replace")}) + "\n")
        return "250 2.0.0 accepted"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--mode", default="ok")
    args = p.parse_args()
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, data):
        ok = args.mode != "refuse-auth" and isinstance(data, LoginPassword) and \
            data.login.decode() == args.user and data.password.decode() == args.password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    kwargs = {}
    if args.implicit_tls:
        kwargs["ssl_context"] = context
    elif context is not None:
        kwargs.update(tls_context=context, require_starttls=bool(args.user))
    if args.user:
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=not args.implicit_tls)
    controller = Controller(Handler(args.out, args.mode, args.implicit_tls), hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    print(controller.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
