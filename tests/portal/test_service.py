"""The vw-portal service and its twistd plugin: wiring, config checks, first admin."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from twisted.application import internet
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from tests.portal.helpers import PASSWORD, Portal, resolved
from twisted.plugins.vw_portal import vw_portal
from vw.allinone import tap as allinone
from vw.common.listener import TCPListener
from vw.config import Config, GeneralConfig, PortalConfig, TokenConfig, XMPPConfig
from vw.portal.joining import Joins, Participant, turn_secret, with_join_tokens
from vw.portal.mail import LogMailer, SMTPMailer
from vw.portal.records import JoinRoom
from vw.portal.service import PortalService, mailer_for
from vw.portal.tap import Options
from vw.portal.workers import Workers, worker_command
from vw.xmpp.token import TokenRejected


def test_the_plugin_names_the_tap() -> None:
    assert vw_portal.tapname == "vw-portal"
    assert vw_portal.module == "vw.portal.tap"


def test_the_service_migrates_its_database_and_listens_on_the_portal_port(
        tmp_path: Path) -> None:
    config = Config(general=GeneralConfig(state_dir=str(tmp_path)),
                    portal=PortalConfig(http_port=8123))
    service = PortalService(config, Clock())
    assert (tmp_path / "portal.sqlite").exists()
    servers = [child for child in service if isinstance(child, internet.TCPServer)]
    assert [(server.args[0], server.kwargs["interface"]) for server in servers] == [
        (8123, "127.0.0.1")]
    assert any(isinstance(child, internet.TimerService) for child in service)
    assert service._database_health() is None
    assert not service.store.has_admin()
    service.engine.dispose()


def test_with_workers_the_service_shares_its_port_and_starts_the_others(
        tmp_path: Path) -> None:
    config = Config(general=GeneralConfig(state_dir=str(tmp_path)),
                    portal=PortalConfig(http_port=8123, workers=3), source="/etc/vw/vw.toml")
    service = PortalService(config, Clock())
    [listener] = [child for child in service if isinstance(child, TCPListener)]
    assert (listener.port, listener.interface, listener.first) == (8123, "127.0.0.1", True)
    [workers] = [child for child in service if isinstance(child, Workers)]
    assert workers.count == 2
    assert workers.command()[-4:] == ["--shared-port", "8123", "--config", "/etc/vw/vw.toml"]
    assert not any(isinstance(child, internet.TCPServer) for child in service)
    assert any(isinstance(child, internet.TimerService) for child in service)
    service.engine.dispose()


def test_a_worker_serves_the_shared_port_alone(tmp_path: Path) -> None:
    config = Config(general=GeneralConfig(state_dir=str(tmp_path)),
                    portal=PortalConfig(http_port=8123, workers=3))
    service = PortalService(config, Clock(), shared_port=8124)
    assert [(type(child), child.port, child.first) for child in service] == [
        (TCPListener, 8124, False)]
    service.engine.dispose()


def test_the_worker_command_runs_this_python_with_the_same_configuration() -> None:
    command = worker_command(Config(), 8000)
    assert command[0] == sys.executable and "vw-portal" in command
    assert command[-2:] == ["--shared-port", "8000"] and "--log-format=text" in command
    from_file = worker_command(Config(general=GeneralConfig(log_format="json"),
                                      source="vw.toml"), 8000)
    assert from_file[-2:] == ["--config", str(Path("vw.toml").resolve())]
    assert "--log-format=json" in from_file
    options = Options()
    options.parseOptions(["--shared-port", "8000"])
    assert options["shared-port"] == 8000


@pytest.mark.parametrize("content, message", [
    ("[portal]\nsignup = 'sometimes'\n", "portal.signup"),
    ("[portal]\nsignup_role = 'king'\n", "portal.signup_role"),
    ("[portal]\nhttp_port = 70000\n", "portal.http_port"),
    ("[portal]\nsession_ttl = 0\n", "portal.session_ttl"),
    ("[portal]\nworkers = 0\n", "portal.workers"),
    ("[portal]\nhttp_port = 'eight'\n", "portal.http_port: must be an integer"),
    ("[xmpp.token]\nalgorithm = 'RS256'\n", "xmpp.token.algorithm"),
])
def test_bad_portal_settings_stop_twistd_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    path = tmp_path / "vw.toml"
    path.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        Options().parseOptions(["--config", str(path)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"vw: {path}: ") and message in error


def test_good_settings_load(tmp_path: Path) -> None:
    path = tmp_path / "vw.toml"
    path.write_text("[portal]\nsignup = 'open'\nhttp_port = 8001\n"
                    "trusted_proxies = ['127.0.0.1']\n")
    options = Options()
    options.parseOptions(["--config", str(path)])
    assert options.config.portal.signup == "open"
    assert options.config.portal.trusted_proxies == ["127.0.0.1"]


def test_mail_goes_to_the_relay_when_there_is_one(tmp_path: Path) -> None:
    assert isinstance(mailer_for(Config()), LogMailer)
    relay = mailer_for(Config(portal=PortalConfig(smtp_host="mail.example.org",
                                                  smtp_port=587)))
    assert isinstance(relay, SMTPMailer)
    assert (relay.host, relay.port, relay.sender) == ("mail.example.org", 587,
                                                      "noreply@localhost")
    message = relay.message("ann@example.org", "Reset", "Hello\n").decode()
    assert "To: ann@example.org" in message and "Subject: Reset" in message


def test_the_first_admin_signs_up_with_the_startup_link(portal: Portal) -> None:
    accounts = portal.site.pages.accounts
    link = resolved(ensureDeferred(accounts.first_admin_link()))
    assert link is not None
    found = re.fullmatch(r"https://portal\.test(/signup\?invite=(\S+))", link)
    assert found is not None
    browser = portal.client()
    response = browser.submit("/signup", {"email": "root@example.org", "display_name": "Root",
                                          "password": PASSWORD, "invite": found.group(2)},
                              form_at=found.group(1))
    assert response.code == 303
    root = portal.store.user_by_email("root@example.org")
    assert root is not None and root.role == "admin"
    assert resolved(ensureDeferred(accounts.first_admin_link())) is None


def test_without_an_app_secret_join_tokens_get_a_persistent_one(tmp_path: Path) -> None:
    config = Config(general=GeneralConfig(state_dir=str(tmp_path)))
    effective = with_join_tokens(config)
    token = effective.xmpp.token
    assert token.app_secret and token.allow_anonymous
    assert (tmp_path / "token-secret").read_text().strip() == token.app_secret
    assert with_join_tokens(effective) == effective
    assert with_join_tokens(config) == effective
    configured = Config(general=GeneralConfig(state_dir=str(tmp_path / "other")),
                        xmpp=XMPPConfig(token=TokenConfig(app_secret="mine")))
    assert with_join_tokens(configured) is configured
    assert not (tmp_path / "other").exists()


def test_the_all_in_one_runs_the_portal_and_its_xmpp_server_checks_the_portals_tokens(
        tmp_path: Path) -> None:
    path = tmp_path / "vw.toml"
    path.write_text(f"[general]\nstate_dir = '{tmp_path / 'var'}'\n")
    options = allinone.Options()
    options.parseOptions(["--config", str(path)])
    top = allinone.makeService(options)
    portal = top.getServiceNamed("portal")
    xmpp = top.getServiceNamed("xmpp")
    assert isinstance(portal, PortalService)
    servers = [child for child in portal if isinstance(child, internet.TCPServer)]
    assert [server.args[0] for server in servers] == [8000]
    assert portal.config.xmpp.token == xmpp.xmpp.full_config.xmpp.token
    assert xmpp.xmpp.full_config.xmpp.token.allow_anonymous
    joins = Joins(portal.config, turn_secret(portal.config))
    verifier = xmpp.xmpp.token_verifier
    now = time.time()
    token = joins.token(JoinRoom("standup", lobby=True, max_participants=8),
                        Participant(id="7", name="Ann"), True, now)
    identity = verifier.verify(token, "localhost")
    assert (identity.room, identity.user["name"], identity.moderator) == ("standup", "Ann", True)
    assert (identity.lobby, identity.max_participants) == (True, 8)
    assert not verifier.room_allowed(identity, "other-room")
    forged = Joins(with_join_tokens(Config(general=GeneralConfig(
        state_dir=str(tmp_path / "elsewhere")))), "turn").token(
        JoinRoom("standup"), Participant(id="7", name="Ann"), True, now)
    with pytest.raises(TokenRejected):
        verifier.verify(forged, "localhost")
    portal.engine.dispose()
    xmpp.xmpp.engine.dispose()


def test_the_all_in_one_checks_the_portals_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vw.toml"
    path.write_text("[portal]\nsignup = 'sometimes'\n")
    with pytest.raises(SystemExit):
        allinone.Options().parseOptions(["--config", str(path)])
    assert "portal.signup" in capsys.readouterr().err
