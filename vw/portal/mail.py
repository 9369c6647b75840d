"""Outgoing mail: through an SMTP relay when one is configured, else into the log."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.mail.smtp import sendmail

log = Logger()


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> Deferred[object]: ...


class LogMailer:
    """No relay: the message goes to the log, where an operator can pass the link on."""

    def send(self, to: str, subject: str, body: str) -> Deferred[object]:
        log.info("mail to {to} (no smtp_host configured): {subject}\n{body}", to=to,
                 subject=subject, body=body)
        return succeed(None)


class SMTPMailer:
    """Sends through one relay, with STARTTLS and login when a username is configured."""

    def __init__(self, host: str, port: int, sender: str, username: str = "",
                 password: str = "") -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password

    def message(self, to: str, subject: str, body: str) -> bytes:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        return message.as_bytes()

    def send(self, to: str, subject: str, body: str) -> Deferred[object]:
        login = bool(self.username)
        return sendmail(self.host, self.sender, [to], self.message(to, subject, body),
                        port=self.port, username=self.username or None,
                        password=self.password or None, requireAuthentication=login,
                        requireTransportSecurity=login)
