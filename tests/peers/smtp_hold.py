"""A real SMTP peer that can hold its answer to DATA, to crash a client between send and record.

Each message is written whole into a Maildir as soon as its DATA is received. Then, while the file
HOLD exists, the peer keeps the client waiting for the 250 reply; once HOLD is removed it answers.
A test creates HOLD, lets the message arrive, SIGKILLs flyte-notify (which never hears the 250),
removes HOLD, restarts flyte-notify and sees the re-send arrive. Runs until killed.

With DELAY (seconds), every reply to DATA also waits that long: a slow mail server, so that a
burst keeps sends in flight.

usage: smtp_hold.py PORT MAILDIR HOLD [DELAY]
"""

import asyncio
import mailbox
import os
import sys

from aiosmtpd.controller import Controller


def main() -> None:
    port, maildir, hold = sys.argv[1:4]
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    box = mailbox.Maildir(maildir, create=True)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            box.add(envelope.original_content or envelope.content)
            while os.path.exists(hold):
                await asyncio.sleep(0.05)
            await asyncio.sleep(delay)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=int(port))
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
