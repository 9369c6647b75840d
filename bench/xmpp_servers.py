"""Start vw-xmpp and Prosody on loopback in a temporary directory, configured alike."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from processes import free_port
from xmpp_client import RawClient, XMPPError, client_tls_context

ROOT = Path(__file__).resolve().parent.parent
TWISTD = ROOT / ".venv" / "bin" / "twistd"
DOMAIN = "localhost"
MUC_DOMAIN = f"conference.{DOMAIN}"
HOST = "127.0.0.1"


def _die_with_parent() -> None:
    """In the child: have Linux send SIGTERM if the benchmark dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for the domain (the key type vw generates itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName(DOMAIN), x509.DNSName(MUC_DOMAIN),
            x509.IPAddress(ipaddress.ip_address(HOST))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Server:
    """A running server process and where to reach it."""

    name: str
    c2s_port: int
    directory: Path
    command: list[str]
    popen: subprocess.Popen[bytes] | None = None
    process: psutil.Process | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def start(self) -> None:
        """Launch the process with its output going to files in its directory."""
        out = open(self.directory / "stdout.log", "ab")  # noqa: SIM115 - owned by the child
        self.popen = subprocess.Popen(self.command, cwd=self.directory, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      preexec_fn=_die_with_parent)
        out.close()
        self.process = psutil.Process(self.popen.pid)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once an anonymous login succeeds; raise if the process died or took too long."""
        deadline = time.monotonic() + timeout
        tls = client_tls_context()
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; "
                                   f"see {self.directory}/stdout.log\n{self.log_tail()}")
            client = RawClient(HOST, self.c2s_port, DOMAIN, tls, timeout=5)
            try:
                await client.login()
                await client.close()
                return
            except (OSError, XMPPError, TimeoutError) as e:
                last = e
                client.abort()
                await asyncio.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready after {timeout}s: {last!r}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output and log, for error messages."""
        text = []
        for name in ("stdout.log", "prosody.log"):
            path = self.directory / name
            if path.exists():
                text += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds used so far by the server and its children."""
        assert self.process is not None
        total = 0.0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss(self) -> int:
        """Resident set size of the server process in bytes."""
        assert self.process is not None
        return int(self.process.memory_info().rss)

    def stop(self) -> None:
        """Terminate the process (then kill it if it lingers)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def vw_server(base: Path, cert: Path, key: Path) -> Server:
    """vw-xmpp under twistd with the per-connection rate limit lifted."""
    directory = base / "vw"
    (directory / "var").mkdir(parents=True)
    c2s = free_port()
    config = directory / "vw.toml"
    config.write_text(f"""\
[general]
domain = "{DOMAIN}"
state_dir = "{directory / 'var'}"
bind = "{HOST}"

[tls]
certificate = "{cert}"
key = "{key}"

[xmpp]
c2s_port = {c2s}
http_port = {free_port()}
component_port = {free_port()}
rate_bytes_per_second = 100000000
""")
    command = [str(TWISTD), "--nodaemon", "--pidfile=", "vw-xmpp", "--config", str(config)]
    return Server("vw", c2s, directory, command)


def prosody_binary() -> str:
    """The Prosody launcher, or an explanatory error."""
    path = shutil.which("prosody")
    if path is None:
        raise RuntimeError("prosody is not installed (apt-get install prosody)")
    return path


def prosody_version() -> str:
    """Prosody's version as prosodyctl reports it, or "unknown"."""
    try:
        out = subprocess.run(["prosodyctl", "about"], capture_output=True, text=True,
                             timeout=20, env={**os.environ, "HOME": "/tmp"}).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"^Prosody\s+(\S+)", out, re.M)
    return match.group(1) if match else "unknown"


def prosody_server(base: Path, cert: Path, key: Path) -> Server:
    """Prosody with ANONYMOUS on the domain, required STARTTLS, a MUC and lifted c2s limits."""
    directory = base / "prosody"
    (directory / "data").mkdir(parents=True)
    (directory / "certs").mkdir()  # certmanager indexes it even when ssl= names files
    c2s = free_port()
    config = directory / "prosody.cfg.lua"
    config.write_text(f"""\
-- generated by bench/xmpp.py
run_as_root = true
pidfile = "{directory / 'prosody.pid'}"
data_path = "{directory / 'data'}"
interfaces = {{ "{HOST}" }}
local_interfaces = {{ "{HOST}" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ }}
component_ports = {{ }}
network_backend = "epoll"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "limits" }}
modules_disabled = {{ "posix"; "s2s"; "s2s_auth_certs"; "offline" }}
limits = {{ c2s = {{ rate = "100mb/s" }} }}
c2s_require_encryption = true
storage = "memory"
ssl = {{ certificate = "{cert}"; key = "{key}" }}
log = {{ warn = "{directory / 'prosody.log'}" }}

VirtualHost "{DOMAIN}"
    authentication = "anonymous"

Component "{MUC_DOMAIN}" "muc"
    muc_room_locking = false
""")
    command = [prosody_binary(), "-F", "--config", str(config)]
    return Server("prosody", c2s, directory, command)
