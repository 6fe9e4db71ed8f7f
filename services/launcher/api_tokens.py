"""The API tokens of a local run, and the command that manages a tokens file.

Unless WF_API_TOKENS_FILE names a tokens file (or WF_AUTH=off), the first run writes WF_DATA_DIR/secrets/api-tokens.json
with new tokens and shows them, that once: the file keeps only their digests. Later runs use the same file; delete it
to get new tokens.

`python -m services.launcher.api_tokens` makes that file without starting anything, and with a command manages any
tokens file (WF_API_TOKENS_FILE, or `--file`): `issue` a token (shown once), `revoke` one, `list` them. The api and the
broadcaster see a change within a second, without a restart (runtime/tokens.py, TokensFile)."""

import argparse
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from contracts.auth import Role, TokenHolder
from runtime.tokens import DIGEST_PREFIX, AuthNotConfigured, Tokens, new_token, token_digest, write_tokens_file
from services.launcher.settings import LauncherSettings

# Who a local run's tokens belong to: one that may do everything, and the approvers the expense type names.
DEV_HOLDERS = [
    TokenHolder(name="dev", roles=frozenset(Role), groups=frozenset({"managers"}), email="dev@localhost")
] + [TokenHolder(name=name, roles=frozenset({Role.APPROVER})) for name in ("director", "fin-ann", "fin-bob", "fin-cy")]
DURATION = re.compile(r"([1-9][0-9]*)([smhdw])")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SHOWN_DIGEST = len(DIGEST_PREFIX) + 12  # `list` shows this much of a digest: enough to revoke it by


@dataclass(frozen=True)
class ApiTokens:
    environment: dict[str, str]  # what the api and the broadcaster are given
    file: Path | None  # None: someone else's file, or no tokens (WF_AUTH=off)
    created: dict[str, TokenHolder] = field(default_factory=dict)  # token -> holder, when made by this run

    def where_to_sign_in(self, api_url: str) -> list[str]:
        """What to tell the person at the terminal."""
        if self.file is None:
            return []
        if not self.created:
            return [f"API tokens   the ones shown when {self.file} was made (delete it for new ones)"]
        lines = [f"API tokens   new, shown only now ({self.file} keeps only their digests):"]
        for token, holder in self.created.items():
            lines.append(f"  {holder.name:<10} {token}   ({', '.join(sorted(holder.roles))})")
        dev = next(token for token, holder in self.created.items() if holder.name == "dev")
        lines.append(f"  sign in    {api_url}/#token={dev}")
        lines.append(f"  shell      export WF_TOKEN={dev}   (what wf and the curl below send)")
        return lines


def local_tokens_file(data_dir: Path) -> Path:
    return data_dir / "secrets" / "api-tokens.json"


def api_tokens(tokens_file: str, auth: str, data_dir: Path) -> ApiTokens:
    """The tokens file the api and the broadcaster are to read: the one named, or this run's own."""
    if tokens_file or auth == "off":
        return ApiTokens(environment={}, file=None)  # the services read the same variables from the environment
    path = local_tokens_file(data_dir)
    created = {}
    if not path.exists():
        created = {new_token(): holder for holder in DEV_HOLDERS}
        write_tokens_file(path, created)
    return ApiTokens(environment={"WF_API_TOKENS_FILE": str(path)}, file=path, created=created)


# Managing a tokens file


class Refused(Exception):
    """The command cannot do what it was asked: said on stderr, exit status 1."""


def issue(
    path: Path,
    name: str,
    roles: frozenset[Role],
    expires_in: timedelta | None,
    now: datetime,
    email: str | None = None,
    groups: frozenset[str] = frozenset(),
) -> str:
    """A new token for `name`, added to the file (made when missing): returns the token, which the file does not keep.
    A name may hold several tokens (one being replaced by another). `email`: its profile's address (notifications)."""
    try:
        expires_at = now + expires_in if expires_in else None
        holder = TokenHolder(name=name, roles=roles, groups=groups, expires_at=expires_at, email=email)
    except ValidationError as error:
        problem = error.errors()[0]
        raise Refused(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None
    holders = _read(path).by_digest if path.exists() else {}
    token = new_token()
    Tokens(holders | {token_digest(token): holder}).write(path)
    return token


def revoke(path: Path, who: str) -> list[str]:
    """Remove every token of the holder named `who`, or the one token whose digest starts with `who` (`sha256:…`,
    as `list` shows it). Returns the digests removed. The last token is not removed: the services would keep it
    anyway, as they never take a file that refuses everyone."""
    holders = _read(path).by_digest
    if who.startswith(DIGEST_PREFIX):
        removed = [digest for digest in holders if digest.startswith(who.lower())]
        if len(removed) > 1:
            raise Refused(f"{who} is the start of {len(removed)} digests: give more of it")
    else:
        removed = [digest for digest, holder in holders.items() if holder.name == who]
    if not removed:
        raise Refused(
            f"no token in {path} is {who}'s"
            if not who.startswith(DIGEST_PREFIX)
            else f"no token in {path} has a digest starting with {who}"
        )
    kept = {digest: holder for digest, holder in holders.items() if digest not in removed}
    if not kept:
        raise Refused(
            f"that would leave {path} with no token, which the services refuse to take (they would keep "
            "the old ones): issue another first"
        )
    Tokens(kept).write(path)
    return removed


def listing(path: Path, now: datetime) -> list[str]:
    """One line per token: the start of its digest, its holder, roles and expiry. No token is in the file to show."""
    lines = [f"{'digest':<{SHOWN_DIGEST + 1}}  {'name':<16} {'roles':<30} expires"]
    for digest, holder in sorted(_read(path).by_digest.items(), key=lambda item: item[1].name):
        if holder.expires_at is None:
            expiry = "never"
        else:
            expiry = holder.expires_at.isoformat() + ("  (expired)" if now >= holder.expires_at else "")
        roles = ",".join(sorted(holder.roles))
        lines.append(f"{digest[:SHOWN_DIGEST]}…  {holder.name:<16} {roles:<30} {expiry}")
    return lines


def _read(path: Path) -> Tokens:
    try:
        return Tokens.from_file(path)
    except AuthNotConfigured as problem:
        raise Refused(str(problem)) from None


def duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w`."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: a whole number and s, m, h, d or w (e.g. 30d)")
    return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})


def role_list(text: str) -> frozenset[Role]:
    """`approver,requester`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in {role.value for role in Role}]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown role {', '.join(map(repr, unknown)) or '(none given)'}: give some of {', '.join(sorted(Role))}"
        )
    return frozenset(Role(name) for name in names)


def parse_arguments(argv: list[str] | None, settings: LauncherSettings) -> argparse.Namespace:
    default_file = Path(settings.api_tokens_file) if settings.api_tokens_file else local_tokens_file(settings.data_dir)
    parser = argparse.ArgumentParser(
        prog="python -m services.launcher.api_tokens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=default_file,
        help=f"the tokens file (default: WF_API_TOKENS_FILE, else {default_file})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    command = commands.add_parser("issue", help="add a token for NAME and show it (only now)")
    command.add_argument("name", metavar="NAME", help="its holder: who the log records for its decisions")
    command.add_argument(
        "--roles",
        type=role_list,
        required=True,
        metavar="ROLE,...",
        help=f"what it may do: some of {', '.join(sorted(Role))}, comma separated",
    )
    command.add_argument(
        "--expires-in",
        type=duration,
        metavar="DURATION",
        help="refused after this long: 45s, 90m, 12h, 30d, 2w (default: never)",
    )
    command.add_argument("--email", metavar="ADDRESS", help="where its e-mail notifications go (its profile)")
    command.add_argument(
        "--groups",
        type=lambda text: frozenset(filter(None, text.split(","))),
        default=frozenset(),
        metavar="GROUP,...",
        help="the groups it is in (a type's wait may take a command from a group), comma separated",
    )
    command = commands.add_parser("revoke", help="remove NAME's tokens, or the one of a digest")
    command.add_argument("who", metavar="NAME|sha256:DIGEST", help="a holder's name, or the start of a digest")
    commands.add_parser("list", help="each token's holder, roles and expiry (no token: the file has none)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    settings = LauncherSettings()
    arguments = parse_arguments(argv, settings)
    path, now = arguments.file, datetime.now(UTC).replace(microsecond=0)
    try:
        if arguments.command is None:  # the local run's file, made without starting anything (for compose)
            tokens = api_tokens("", "on", settings.data_dir)
            for line in tokens.where_to_sign_in(f"http://127.0.0.1:{settings.api_port}"):
                print(line)
        elif arguments.command == "issue":
            token = issue(
                path, arguments.name, arguments.roles, arguments.expires_in, now, arguments.email, arguments.groups
            )
            expiry = f"expires {(now + arguments.expires_in).isoformat()}" if arguments.expires_in else "no expiry"
            roles = ", ".join(sorted(arguments.roles))
            print(
                f"issued a token for {arguments.name} ({roles}; {expiry}), shown only now; {path} keeps its "
                f"digest {token_digest(token)[:SHOWN_DIGEST]}…",
                file=sys.stderr,
            )
            print(token)
        elif arguments.command == "revoke":
            removed = revoke(path, arguments.who)
            shown = ", ".join(digest[:SHOWN_DIGEST] + "…" for digest in removed)
            print(
                f"revoked {len(removed)} token{'s' * (len(removed) != 1)} ({shown}) in {path}: the api and the "
                "broadcaster refuse it within a second"
            )
        else:
            print("\n".join(listing(path, now)))
    except Refused as refusal:
        print(f"api_tokens: {refusal}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
