"""vw-accounts: manage internal XMPP accounts (SCRAM keys only, never passwords)."""

from __future__ import annotations

import argparse
import getpass
import sys

from vw.config import ConfigError, load
from vw.xmpp.stanzas import parse_jid
from vw.xmpp.storage import AccountStore, open_database


def _store(config_path: str | None) -> AccountStore:
    config = load(config_path)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    url = config.xmpp.database or f"sqlite:///{config.state_dir / 'xmpp.sqlite'}"
    return AccountStore(open_database(url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vw-accounts", description=__doc__)
    parser.add_argument("--config", help="path to vw.toml (default: embedded defaults)")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create an account or change its password")
    add.add_argument("jid", help="user@host")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking")
    delete = commands.add_parser("delete", help="remove an account")
    delete.add_argument("jid")
    listing = commands.add_parser("list", help="list the accounts of a host")
    listing.add_argument("host")
    args = parser.parse_args(argv)
    try:
        store = _store(args.config)
    except ConfigError as e:
        print(f"vw-accounts: {e}", file=sys.stderr)
        return 2
    if args.command == "list":
        for name in store.usernames(args.host):
            print(f"{name}@{args.host}")
        return 0
    jid = parse_jid(args.jid)
    if not jid.user or jid.resource:
        print("vw-accounts: give a bare JID, user@host", file=sys.stderr)
        return 2
    if args.command == "delete":
        if not store.delete(jid.host, jid.user):
            print(f"vw-accounts: no account {jid.full()}", file=sys.stderr)
            return 1
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {jid.full()}: ")
    if not password:
        print("vw-accounts: empty password", file=sys.stderr)
        return 2
    store.set_password(jid.host, jid.user, password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
