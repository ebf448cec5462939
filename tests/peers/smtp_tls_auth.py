"""A real SMTP peer for the tests: aiosmtpd with TLS and AUTH (PLAIN and LOGIN offered).

MODE is `starttls` (the default: plain text until STARTTLS, AUTH only after it) or `implicit`
(TLS from the first byte, as on port 465). IDLE, when given, is how many seconds the server
waits for a command before it says 421 and closes the connection (aiosmtpd's default is 300).

Each accepted message goes into a Maildir. Each event is appended to a JSON-lines log, so a test
can check exactly what the client did:
  {"event": "ehlo", "peer": PORT, "tls": BOOL}     each EHLO (twice per STARTTLS connection)
  {"event": "auth", "peer": PORT, "tls": BOOL, "mechanism": ..., "login": ..., "password_ok": BOOL}
  {"event": "message", "peer": PORT, "tls": BOOL}
"peer" is the client's port: one per connection. Runs until killed.

usage: smtp_tls_auth.py PORT MAILDIR EVENTLOG CERT KEY USER PASSWORD [MODE [IDLE]]
"""

import asyncio
import json
import mailbox
import ssl
import logging
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


# aiosmtpd logs a warning about its own use of a deprecated attribute on every login: noise here.
logging.getLogger("mail.log").setLevel(logging.ERROR)


def main() -> None:
    port, maildir, eventlog, cert, key, user, password = sys.argv[1:8]
    mode = sys.argv[8] if len(sys.argv) > 8 else "starttls"
    idle = float(sys.argv[9]) if len(sys.argv) > 9 else 300.0
    box = mailbox.Maildir(maildir, create=True)

    def log(event, server, session, **fields):
        # Under STARTTLS the server's transport is replaced by the TLS one; with implicit TLS it
        # is TLS from the start. Either way it has an ssl_object exactly when encrypted.
        tls = server.transport.get_extra_info("ssl_object") is not None
        line = {"event": event, "peer": session.peer[1], "tls": tls, **fields}
        with open(eventlog, "a") as f:
            f.write(json.dumps(line) + "\n")

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            log("ehlo", server, session)
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server, session, envelope):
            box.add(envelope.original_content or envelope.content)
            log("message", server, session)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        is_login = isinstance(auth_data, LoginPassword)
        ok = (
            is_login
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        log(
            "auth",
            server,
            session,
            mechanism=mechanism,
            login=auth_data.login.decode() if is_login else None,
            password_ok=ok,
        )
        # handled=False: let aiosmtpd answer a failure with 535 itself.
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if mode == "implicit":
        # The whole session is TLS, so AUTH needs no STARTTLS first (aiosmtpd would otherwise
        # wait for one that never comes and never offer AUTH).
        tls = {"ssl_context": context, "auth_require_tls": False}
    elif mode == "starttls":
        tls = {"tls_context": context, "auth_require_tls": True}
    else:
        sys.exit(f"unknown MODE {mode!r}: starttls or implicit")
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        authenticator=authenticator,
        timeout=idle,
        **tls,
    )
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
