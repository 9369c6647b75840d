"""A deliberately simple raw XMPP client over a socket, for sending what no polite client would."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time
from pathlib import Path

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='{host}' version='1.0'>")


class RawClient:
    def __init__(self, port: int, host: str = "localhost", timeout: float = 10,
                 source: str = "127.0.0.1") -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.host = host
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_until(self, pattern: str, timeout: float = 10) -> str:
        """Read until ``pattern`` (a regex) matches; return the text up to the match's end."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.S)
        while not regex.search(self.buffer.decode(errors="replace")):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {pattern!r} in {self.buffer[-2000:]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                if regex.search(self.buffer.decode(errors="replace")):
                    break
                raise ConnectionError(f"closed before {pattern!r}: {self.buffer[-2000:]!r}")
            self.buffer += chunk
        text = self.buffer.decode(errors="replace")
        end = regex.search(text).end()
        self.buffer = text[end:].encode()
        return text[:end]

    def closed(self, timeout: float = 10) -> bool:
        """True once the server has closed the connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True
            self.buffer += chunk
        return False

    def open(self) -> str:
        self.send(HEADER.format(host=self.host))
        return self.read_until(r"</stream:features>|<stream:error")

    def starttls(self, ca: Path) -> None:
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until("<proceed")
        context = ssl.create_default_context(cafile=str(ca))
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)

    def login_plain(self, user: str, password: str, ca: Path, resource: str = "raw") -> str:
        """STARTTLS, SASL PLAIN, bind; return the bound JID."""
        self.open()
        self.starttls(ca)
        self.open()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  f"{token}</auth>")
        self.read_until("<success")
        self.open()
        self.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        text = self.read_until("</jid>")
        return re.search(r"<jid>(.*?)</jid>", text).group(1)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
