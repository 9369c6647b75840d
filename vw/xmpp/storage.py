"""Durable state through SQLAlchemy Core: accounts, rosters and persistent rooms."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from vw.xmpp.roster import RosterItem
from vw.xmpp.sasl import ScramCredentials, derive_credentials

metadata = MetaData()

accounts = Table(
    "xmpp_accounts", metadata,
    Column("host", String(255), primary_key=True),
    Column("username", String(1023), primary_key=True),
    Column("credentials", Text, nullable=False),
)
roster_items = Table(
    "xmpp_roster", metadata,
    Column("owner", String(2047), primary_key=True),
    Column("contact", String(3071), primary_key=True),
    Column("name", String(1023), nullable=False, default=""),
    Column("subscription", String(8), nullable=False),
    Column("ask", Boolean, nullable=False),
    Column("groups", Text, nullable=False),
    Column("pending_in", Boolean, nullable=False),
    Column("hidden", Boolean, nullable=False),
)
rooms = Table(
    "xmpp_rooms", metadata,
    Column("service", String(255), primary_key=True),
    Column("node", String(1023), primary_key=True),
    Column("state", Text, nullable=False),
)


def open_database(url: str) -> Engine:
    """Connect and create the tables that are missing."""
    engine = create_engine(url)
    metadata.create_all(engine)
    return engine


def _credentials_to_json(credentials: list[ScramCredentials]) -> str:
    return json.dumps([{**asdict(c), "salt": c.salt.hex(), "stored_key": c.stored_key.hex(),
                        "server_key": c.server_key.hex()} for c in credentials])


def _credentials_from_json(text: str) -> list[ScramCredentials]:
    return [ScramCredentials(hash_name=c["hash_name"], salt=bytes.fromhex(c["salt"]),
                             iterations=c["iterations"], stored_key=bytes.fromhex(c["stored_key"]),
                             server_key=bytes.fromhex(c["server_key"]))
            for c in json.loads(text)]


class AccountStore:
    """Internal accounts: SCRAM keys only, never passwords."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def set_credentials(self, host: str, username: str,
                        credentials: list[ScramCredentials]) -> None:
        text = _credentials_to_json(credentials)
        with self._engine.begin() as db:
            found = db.execute(update(accounts).where(
                accounts.c.host == host, accounts.c.username == username
            ).values(credentials=text)).rowcount
            if not found:
                db.execute(insert(accounts).values(host=host, username=username,
                                                   credentials=text))

    def set_password(self, host: str, username: str, password: str) -> None:
        """Create or update an account with SCRAM-SHA-256 and SCRAM-SHA-1 keys for ``password``."""
        self.set_credentials(host, username, [derive_credentials(password, "sha256"),
                                              derive_credentials(password, "sha1")])

    def delete(self, host: str, username: str) -> bool:
        with self._engine.begin() as db:
            return bool(db.execute(delete(accounts).where(
                accounts.c.host == host, accounts.c.username == username)).rowcount)

    def credentials(self, host: str, username: str) -> list[ScramCredentials]:
        with self._engine.connect() as db:
            text = db.execute(select(accounts.c.credentials).where(
                accounts.c.host == host, accounts.c.username == username)).scalar()
        return _credentials_from_json(text) if text else []

    def exists(self, host: str, username: str) -> bool:
        return bool(self.credentials(host, username))

    def usernames(self, host: str) -> list[str]:
        with self._engine.connect() as db:
            return list(db.execute(select(accounts.c.username).where(
                accounts.c.host == host).order_by(accounts.c.username)).scalars())


class HostCredentials:
    """The SASL credential store view of one host's accounts."""

    def __init__(self, accounts: AccountStore, host: str) -> None:
        self._accounts = accounts
        self._host = host

    def scram_credentials(self, username: str, hash_name: str) -> ScramCredentials | None:
        for credentials in self._accounts.credentials(self._host, username):
            if credentials.hash_name == hash_name:
                return credentials
        return None


class SQLRosterStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def roster(self, owner: str) -> dict[str, RosterItem]:
        with self._engine.connect() as db:
            rows = db.execute(select(roster_items).where(roster_items.c.owner == owner))
            return {row.contact: RosterItem(jid=row.contact, name=row.name,
                                            subscription=row.subscription, ask=row.ask,
                                            groups=tuple(json.loads(row.groups)),
                                            pending_in=row.pending_in, hidden=row.hidden)
                    for row in rows}

    def put(self, owner: str, item: RosterItem) -> None:
        values = {"name": item.name, "subscription": item.subscription, "ask": item.ask,
                  "groups": json.dumps(list(item.groups)), "pending_in": item.pending_in,
                  "hidden": item.hidden}
        with self._engine.begin() as db:
            found = db.execute(update(roster_items).where(
                roster_items.c.owner == owner, roster_items.c.contact == item.jid
            ).values(**values)).rowcount
            if not found:
                db.execute(insert(roster_items).values(owner=owner, contact=item.jid, **values))

    def remove(self, owner: str, contact: str) -> None:
        with self._engine.begin() as db:
            db.execute(delete(roster_items).where(roster_items.c.owner == owner,
                                                  roster_items.c.contact == contact))


class SQLRoomStore:
    """Persistent MUC rooms, as JSON state per room."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load_rooms(self, service_domain: str) -> dict[str, dict[str, Any]]:
        with self._engine.connect() as db:
            rows = db.execute(select(rooms).where(rooms.c.service == service_domain))
            return {row.node: json.loads(row.state) for row in rows}

    def save_room(self, service_domain: str, node: str, state: dict[str, Any]) -> None:
        text = json.dumps(state)
        with self._engine.begin() as db:
            found = db.execute(update(rooms).where(
                rooms.c.service == service_domain, rooms.c.node == node
            ).values(state=text)).rowcount
            if not found:
                db.execute(insert(rooms).values(service=service_domain, node=node, state=text))

    def delete_room(self, service_domain: str, node: str) -> None:
        with self._engine.begin() as db:
            db.execute(delete(rooms).where(rooms.c.service == service_domain,
                                           rooms.c.node == node))
