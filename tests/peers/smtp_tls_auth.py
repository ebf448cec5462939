"""A real SMTP peer for the tests: aiosmtpd with STARTTLS and AUTH (PLAIN and LOGIN offered).

Each accepted message goes into a Maildir; each AUTH attempt is appended to a JSON-lines log
(mechanism, login, whether the password matched, whether the session was already under TLS),
so a test can check exactly what the client did. Runs until killed.

usage: smtp_tls_auth.py PORT MAILDIR AUTHLOG CERT KEY USER PASSWORD
"""

import asyncio
import json
import mailbox
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    port, maildir, authlog, cert, key, user, password = sys.argv[1:8]
    box = mailbox.Maildir(maildir, create=True)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            box.add(envelope.original_content or envelope.content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        with open(authlog, "a") as f:
            f.write(
                json.dumps(
                    {
                        "mechanism": mechanism,
                        "login": auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None,
                        "password_ok": ok,
                        "tls": session.ssl is not None,
                    }
                )
                + "\n"
            )
        # handled=False: let aiosmtpd answer a failure with 535 itself.
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
