"""Generated TLS material and the shared context helpers, over a real TLS handshake."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from OpenSSL import SSL

from vw.common.tls import client_context, ensure_material, peer_matches, server_context
from vw.config import Config, GeneralConfig, TLSConfig


def config_in(tmp_path: Path, **tls: object) -> Config:
    return Config(general=GeneralConfig(state_dir=str(tmp_path / "var"), domain="meet.example"),
                  tls=TLSConfig(**tls))


def handshake(server: SSL.Context, client: SSL.Context, name: str) -> SSL.Connection:
    left, right = socket.socketpair()
    server_side = SSL.Connection(server, left)
    server_side.set_accept_state()
    client_side = SSL.Connection(client, right)
    client_side.set_connect_state()
    client_side.set_tlsext_host_name(name.encode())
    thread = threading.Thread(target=server_side.do_handshake)
    thread.start()
    client_side.do_handshake()
    thread.join(5)
    return client_side


def test_generated_once_and_reused(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    first = ensure_material(config)
    pem = first.certificate.read_bytes()
    again = ensure_material(config)
    assert again.certificate.read_bytes() == pem
    assert (first.key.stat().st_mode & 0o777) == 0o600


def test_new_names_regenerate(tmp_path: Path) -> None:
    pem = ensure_material(config_in(tmp_path)).certificate.read_bytes()
    other = ensure_material(config_in(tmp_path, extra_names=["turn.meet.example"]))
    assert other.certificate.read_bytes() != pem


def test_clients_trusting_the_ca_verify_the_names(tmp_path: Path) -> None:
    material = ensure_material(config_in(tmp_path))
    for name in ("meet.example", "conference.meet.example", "localhost"):
        connection = handshake(server_context(material), client_context(material.ca), name)
        assert peer_matches(connection, name)
        assert not peer_matches(connection, "evil.example")
        assert connection.get_protocol_version_name() in ("TLSv1.2", "TLSv1.3")


def test_configured_files_override(tmp_path: Path) -> None:
    generated = ensure_material(config_in(tmp_path / "a"))
    config = config_in(tmp_path / "b", certificate=str(generated.certificate),
                       key=str(generated.key))
    material = ensure_material(config)
    assert material.certificate == generated.certificate and material.ca is None
    assert not (tmp_path / "b" / "var" / "tls").exists()
