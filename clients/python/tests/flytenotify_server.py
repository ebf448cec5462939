"""Runs the real flyte-notify binary for the tests and reads what it delivered."""

from __future__ import annotations

import email.policy
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")
START_TIMEOUT = 30.0


def find_binary() -> Path:
    """$FLYTE_NOTIFY_BIN, else the debug build in $CARGO_TARGET_DIR, in the developer cache dir the
    project's docs use, or in cargo's default target/."""
    explicit = os.environ.get("FLYTE_NOTIFY_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"FLYTE_NOTIFY_BIN={explicit} does not exist")
        return path
    candidates = []
    target_dir = os.environ.get("CARGO_TARGET_DIR")
    if target_dir:
        # cargo resolves a relative CARGO_TARGET_DIR against where it runs: the repo root.
        candidates.append(REPO_ROOT / target_dir / "debug" / "flyte-notify")
    candidates.append(Path.home() / ".cache" / "flyte-notify-target" / "debug" / "flyte-notify")
    candidates.append(REPO_ROOT / "target" / "debug" / "flyte-notify")
    for path in candidates:
        if path.is_file():
            return path
    tried = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no flyte-notify binary; build it with `cargo build` or set FLYTE_NOTIFY_BIN. Tried:\n  {tried}")


class Server:
    """One `flyte-notify serve` process on a free port with its own data dir."""

    def __init__(self, binary: Path, data_dir: Path, config_yaml: str | None = None) -> None:
        self.data_dir = data_dir
        self.log: list[str] = []
        self._port_found = threading.Event()
        self._address: str | None = None
        args = [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
        if config_yaml is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            config = data_dir / "config.yaml"
            config.write_text(config_yaml)
            args += ["--config", str(config)]
        env = {k: v for k, v in os.environ.items() if k != "FLYTE_NOTIFY_CONFIG"}
        env["RUST_LOG"] = "info"  # the "listening on" line is logged at info
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        # Keep draining stderr for the whole run: a full pipe would block the server's logging.
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._port_found.wait(START_TIMEOUT) or self._address is None:
            self.stop()
            raise RuntimeError("flyte-notify did not report its address; log:\n" + self.log_text())

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(line)
            match = LISTENING.search(line)
            if match and self._address is None:
                self._address = match.group(1)
                self._port_found.set()
        self._port_found.set()  # exited: let the waiter fail now rather than at the timeout

    @property
    def target(self) -> str:
        assert self._address is not None
        return self._address

    @property
    def maildir(self) -> Path:
        return self.data_dir / "maildir"

    def log_text(self) -> str:
        return "\n".join(self.log[-200:])

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=5)


def read_mail(maildir: Path) -> list[EmailMessage]:
    new = maildir / "new"
    if not new.is_dir():
        return []
    parser = BytesParser(policy=email.policy.default)
    # The server writes into tmp/ and renames into new/, so every file here is complete.
    return [parser.parsebytes(p.read_bytes()) for p in sorted(new.iterdir())]


def wait_for_mail(
    maildir: Path, matches: Callable[[EmailMessage], bool], count: int, timeout: float = 20.0
) -> list[EmailMessage]:
    """The messages that `matches`, once there are at least `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in read_mail(maildir) if matches(m)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"expected {count} messages, found {len(found)}: {[m['Subject'] for m in found]}"
            return found
        time.sleep(0.1)


def subject_contains(text: str) -> Callable[[EmailMessage], bool]:
    return lambda m: text in str(m["Subject"])


def recipients(message: EmailMessage) -> set[str]:
    return {a.addr_spec for a in message["To"].addresses}


def parts(message: EmailMessage) -> dict[str, str]:
    """{content type: decoded text} of the leaf parts."""
    return {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}


class SmtpSink:
    """A minimal plaintext SMTP server on 127.0.0.1 that keeps what it accepts. It answers RCPT
    with a permanent 550 for the addresses in `refused`, so a send to one of them dies at once;
    take the address out and a redriven delivery goes through."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def refuse(self, address: str) -> None:
        with self._lock:
            self.refused.add(address.lower())

    def accept(self, address: str) -> None:
        with self._lock:
            self.refused.discard(address.lower())

    def received(self, matches: Callable[[EmailMessage], bool]) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if matches(m)]

    def wait_for(self, matches: Callable[[EmailMessage], bool], count: int, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(matches)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"expected {count} messages, got {[m['Subject'] for m in found]}"
                return found
            time.sleep(0.1)

    def stop(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:

            def reply(text: str) -> None:
                conn.sendall(text.encode() + b"\r\n")

            reply("220 sink ESMTP")
            recipients: list[str] = []
            for raw in lines:
                command = raw.decode("utf-8", "replace").strip()
                verb = command[:4].upper()
                if verb in ("EHLO", "HELO"):
                    reply("250 sink")
                elif verb == "MAIL":
                    recipients = []
                    reply("250 OK")
                elif verb == "RCPT":
                    address = command.partition("<")[2].partition(">")[0].lower()
                    with self._lock:
                        refused = address in self.refused
                    if refused:
                        reply(f"550 5.1.1 <{address}>: mailbox unavailable")
                    else:
                        recipients.append(address)
                        reply("250 OK")
                elif verb == "DATA":
                    if not recipients:
                        reply("503 5.5.1 no valid recipients")
                        continue
                    reply("354 end with .")
                    body = bytearray()
                    for line in lines:
                        if line in (b".\r\n", b".\n"):
                            break
                        body += line[1:] if line.startswith(b"..") else line
                    message = BytesParser(policy=email.policy.default).parsebytes(bytes(body))
                    with self._lock:
                        self.messages.append(message)
                    reply("250 OK queued")
                elif verb in ("RSET", "NOOP"):
                    reply("250 OK")
                elif verb == "QUIT":
                    reply("221 bye")
                    return
                else:
                    reply("502 5.5.2 not implemented")
