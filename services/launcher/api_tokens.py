"""The API tokens of a local run. Unless WF_API_TOKENS_FILE names a tokens file (or WF_AUTH=off), the first run writes
WF_DATA_DIR/secrets/api-tokens.json with new tokens and shows them, that once: the file keeps only their digests.
Later runs use the same file; delete it to get new tokens."""

from dataclasses import dataclass, field
from pathlib import Path

from contracts.auth import Role, TokenHolder, new_token, write_tokens_file
from services.launcher.settings import LauncherSettings

# Who a local run's tokens belong to: one that may do everything, and the approvers the expense type names.
DEV_HOLDERS = [TokenHolder(name="dev", roles=frozenset(Role))] + [
    TokenHolder(name=name, roles=frozenset({Role.APPROVER})) for name in ("director", "fin-ann", "fin-bob", "fin-cy")
]


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


def api_tokens(tokens_file: str, auth: str, data_dir: Path) -> ApiTokens:
    """The tokens file the api and the broadcaster are to read: the one named, or this run's own."""
    if tokens_file or auth == "off":
        return ApiTokens(environment={}, file=None)  # the services read the same variables from the environment
    path = data_dir / "secrets" / "api-tokens.json"
    created = {}
    if not path.exists():
        created = {new_token(): holder for holder in DEV_HOLDERS}
        write_tokens_file(path, created)
    return ApiTokens(environment={"WF_API_TOKENS_FILE": str(path)}, file=path, created=created)


def main() -> None:
    """`python -m services.launcher.api_tokens`: the local tokens file, made without starting anything (for compose,
    or after deleting it)."""
    settings = LauncherSettings()
    tokens = api_tokens("", "on", settings.data_dir)
    for line in tokens.where_to_sign_in(f"http://127.0.0.1:{settings.api_port}"):
        print(line)


if __name__ == "__main__":
    main()
