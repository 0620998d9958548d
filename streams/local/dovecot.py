"""A throwaway Dovecot IMAP server for tests and local runs: `dovecot -F` in the foreground on a
free loopback port, with its own configuration, one passwd-file user and Maildir mailboxes in a
temporary directory, all removed on `stop`.

    with LocalDovecot(user="support", password="secret") as server:
        ... connect to 127.0.0.1:server.port ...

Dovecot refuses to run its login processes or to serve mail as root: run as root, logins run as
`dovenull` and mail is stored as `nobody` (users the Debian package creates); run as anyone
else, everything runs as that user. The directory is world-traversable because those
unprivileged processes must reach it (pytest's own temporary directories are not).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from streams.local.install import die_with_parent, free_port

DOVECOT = "/usr/sbin/dovecot"
INSTALL_HINT = "install Dovecot's IMAP server (Debian/Ubuntu: apt-get install dovecot-imapd)"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class DovecotError(RuntimeError):
    """The local Dovecot could not be started."""


def dovecot_binary() -> str | None:
    """The dovecot executable, or None when it is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return DOVECOT if os.access(DOVECOT, os.X_OK) else None


@dataclass(frozen=True, slots=True)
class Accounts:
    login: str  # runs imap-login
    internal: str  # runs auth and the other internal services
    internal_group: str
    mail: str  # owns the mailboxes
    mail_group: str


def accounts() -> Accounts:
    """The users Dovecot accepts here (it runs neither logins nor mail as root)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        return Accounts(me, me, _group_of(me), me, _group_of(me))
    login = "dovenull" if _user_exists("dovenull") else "nobody"
    internal = "dovecot" if _user_exists("dovecot") else "nobody"
    return Accounts(login, internal, _group_of(internal), "nobody", _group_of("nobody"))


def _group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def render_config(root: Path, port: int, *, ssl_cert: Path | None = None,
                  ssl_key: Path | None = None, capabilities: str | None = None) -> str:  # fmt: skip
    users = accounts()
    ssl = (
        f"ssl = required\nssl_cert = <{ssl_cert}\nssl_key = <{ssl_key}\n"
        if ssl_cert and ssl_key else "ssl = no\n"
    )  # fmt: skip
    # what the server announces after login (to test a client against a server without IDLE)
    announce = f"imap_capability = {capabilities}\n" if capabilities else ""
    listener = "imaps" if ssl_cert else "imap"
    other = "imap" if ssl_cert else "imaps"
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = router-test-{port}
log_path = {root}/dovecot.log
{ssl}{announce}disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {users.login}
default_internal_user = {users.internal}
default_internal_group = {users.internal_group}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={users.mail} gid={users.mail_group} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener {listener} {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener {other} {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


class LocalDovecot:
    def __init__(self, *, user: str = "support", password: str = "secret",
                 ssl_cert: Path | None = None, ssl_key: Path | None = None,
                 capabilities: str | None = None) -> None:  # fmt: skip
        self.user = user
        self.capabilities = capabilities
        self.password = password
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.port = 0
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalDovecot:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        binary = dovecot_binary()
        if binary is None:
            raise DovecotError(f"dovecot is not installed: {INSTALL_HINT}")
        root = Path(tempfile.mkdtemp(prefix="router-dovecot-"))
        root.chmod(0o755)
        self.root = root
        self.port = free_port()
        users = accounts()
        (root / "mail").mkdir()
        owner = pwd.getpwnam(users.mail)
        os.chown(root / "mail", owner.pw_uid, owner.pw_gid)
        passwd = root / "users"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        passwd.chmod(0o600)
        reader = pwd.getpwnam(users.internal)  # the auth worker reads it as the internal user
        os.chown(passwd, reader.pw_uid, reader.pw_gid)
        config = root / "dovecot.conf"
        config.write_text(
            render_config(root, self.port, ssl_cert=self.ssl_cert, ssl_key=self.ssl_key,
                          capabilities=self.capabilities)
        )
        output = (root / "stdout.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(os.getpid()),
            )  # fmt: skip
        finally:
            output.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.port, self.ssl_cert is not None):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_text()
                self.stop()
                raise DovecotError(f"dovecot did not start on port {self.port}:\n{log}")
            time.sleep(0.05)  # wait-ok: poll interval of a loop bounded by a deadline

    def log_text(self) -> str:
        if self.root is None:
            return ""
        parts = []
        for name in ("stdout.log", "dovecot.log"):
            with contextlib.suppress(OSError):
                parts.append((self.root / name).read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _answers(port: int, tls: bool) -> bool:
    """Dovecot greets (`* OK`): its login process is up, not just the master's socket. Over
    implicit TLS the greeting comes after the handshake: an accepted connection is enough."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if tls:
                return True
            sock.settimeout(1)
            return sock.recv(4) == b"* OK"
    except OSError:
        return False
