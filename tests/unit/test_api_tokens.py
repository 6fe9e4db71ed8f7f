"""The API tokens file: digests only, each holder named and given roles, an optional expiry; a service without tokens
does not start; a changed file is taken (a good one) or logged and left (a bad one); the command that manages it."""

import asyncio
import json
import logging
import stat
from datetime import UTC, datetime, timedelta

import pytest

from contracts.auth import Role, TokenHolder
from runtime.tokens import (
    AuthNotConfigured,
    AuthSettings,
    TokenRefused,
    Tokens,
    TokensFile,
    load_tokens,
    token_digest,
    write_tokens_file,
)
from services.launcher import api_tokens
from tests.conftest import TEST_TOKENS

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_test_tokens_file_names_each_holder_and_keeps_no_token(tokens_file):
    tokens = Tokens.from_file(tokens_file)

    assert tokens.holder(TEST_TOKENS["approver"]) == TokenHolder(name="approver", roles=frozenset({Role.APPROVER}))
    admin = tokens.holder(TEST_TOKENS["admin"])
    assert admin is not None and admin.roles == set(Role)
    assert tokens.holder("test-token-nobody") is None and tokens.holder("") is None and tokens.holder(None) is None
    assert not any(token in tokens_file.read_text() for token in TEST_TOKENS.values())
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "is not JSON"),
        ("[]", "must hold a JSON object"),
        (
            json.dumps({"plain-token": {"name": "ann", "roles": ["approver"]}}),
            "store a token's digest, never the token",
        ),
        (json.dumps({token_digest("t"): {"name": "ann", "roles": []}}), "roles: Frozenset should have at least 1 item"),
        (json.dumps({token_digest("t"): {"name": "ann", "roles": ["boss"]}}), "roles.0: Input should be 'requester'"),
        (json.dumps({token_digest("t"): {"name": "", "roles": ["approver"]}}), "name: String should have at least"),
        (
            json.dumps({token_digest("t"): {"name": "ann", "roles": ["approver"], "expires_at": "2027-01-01T00:00"}}),
            "expires_at: Input should have timezone info",
        ),
        (json.dumps({}), "holds no tokens"),
    ],
)
def test_a_bad_tokens_file_stops_the_service_with_the_reason(tmp_path, content, problem):
    path = tmp_path / "tokens.json"
    path.write_text(content)

    with pytest.raises(AuthNotConfigured, match=problem):
        load_tokens(AuthSettings(WF_API_TOKENS_FILE=path))


def test_no_tokens_file_stops_the_service_unless_auth_is_turned_off_on_purpose(tmp_path):
    with pytest.raises(AuthNotConfigured, match="set WF_API_TOKENS_FILE .* or WF_AUTH=off"):
        load_tokens(AuthSettings())
    with pytest.raises(AuthNotConfigured, match="cannot read the API tokens file"):
        load_tokens(AuthSettings(WF_API_TOKENS_FILE=tmp_path / "missing.json"))

    assert load_tokens(AuthSettings(WF_AUTH="off")) is None


# expiry


def test_a_token_is_refused_from_its_expiry_on_with_the_time_in_the_reason():
    expiry = NOW + timedelta(hours=1)
    tokens = Tokens.issued({"t": TokenHolder(name="ann", roles=frozenset({Role.APPROVER}), expires_at=expiry)})

    assert tokens.admit("t", NOW).name == "ann"
    with pytest.raises(TokenRefused, match=r"^the token expired at 2026-12-03T13:00:00\+00:00$"):
        tokens.admit("t", expiry)
    with pytest.raises(TokenRefused, match="^the token is not valid$"):
        tokens.admit("other", NOW)


def test_a_file_without_expiries_stays_valid_and_is_written_without_them(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({token_digest("t"): {"name": "ann", "roles": ["approver"]}}))

    Tokens.from_file(path).write(path)

    assert Tokens.from_file(path).admit("t", NOW + timedelta(days=10_000)).expires_at is None
    assert "expires_at" not in path.read_text()


# a changed file


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watched(tmp_path):
    path = tmp_path / "tokens.json"
    ann, bob = (
        TokenHolder(name="ann", roles=frozenset({Role.APPROVER})),
        TokenHolder(name="bob", roles=frozenset({Role.OPERATOR})),
    )
    write_tokens_file(path, {"a": ann, "b": bob})
    clock = Clock()
    return path, clock, TokensFile(path, check_every_s=1.0, clock=clock)


def test_a_token_removed_from_the_file_is_refused_from_the_next_check_on(watched):
    path, clock, tokens = watched
    write_tokens_file(path, {"b": TokenHolder(name="bob", roles=frozenset({Role.OPERATOR}))})

    assert tokens.admit("a").name == "ann"  # not looked at again within the second
    clock.now = 1.0
    with pytest.raises(TokenRefused, match="not valid"):
        tokens.admit("a")
    assert tokens.admit("b").name == "bob"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not JSON"),
        ("{}", "holds no tokens"),
        ('{"plain": {}}', "never the token"),
        (None, "cannot read"),
    ],
)
def test_a_changed_file_that_cannot_be_used_keeps_the_tokens_read_before_and_says_so(watched, caplog, content, problem):
    path, clock, tokens = watched
    path.unlink() if content is None else path.write_text(content)
    clock.now = 1.0

    with caplog.at_level(logging.ERROR, logger="runtime.tokens"):
        assert tokens.admit("a").name == "ann" and tokens.admit("b").name == "bob"
        clock.now = 2.0
        tokens.admit("a")

    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # once per change, not at every check
    assert "API tokens NOT reloaded, still accepting the 2 read before" in errors[0] and problem in errors[0]
    # Then a good one is taken.
    write_tokens_file(path, {"c": TokenHolder(name="cy", roles=frozenset({Role.REQUESTER}))})
    clock.now = 3.0
    assert tokens.admit("c").name == "cy"


async def test_an_open_connection_learns_that_its_token_was_revoked_or_has_expired(watched):
    path, clock, tokens = watched
    waiting = [asyncio.create_task(tokens.until_refused(token)) for token in ("a", "b")]
    await asyncio.sleep(0)
    write_tokens_file(
        path, {"b": TokenHolder(name="bob", roles=frozenset({Role.OPERATOR}), expires_at=datetime.now(UTC))}
    )
    clock.now = 1.0
    tokens.check()

    reasons = await asyncio.wait_for(asyncio.gather(*waiting), 5)

    assert reasons[0] == "the token is not valid" and reasons[1].startswith("the token expired at ")


# the command that manages a tokens file


def test_issue_list_and_revoke(tmp_path, capsys):
    path = tmp_path / "secrets" / "tokens.json"
    run = lambda *args: api_tokens.main(["--file", str(path), *args])  # noqa: E731

    assert run("issue", "ann", "--roles", "approver,requester", "--expires-in", "30d") == 0
    ann = capsys.readouterr().out.strip()
    assert run("issue", "bob", "--roles", "operator") == 0
    bob = capsys.readouterr().out.strip()
    assert run("list") == 0
    listed = capsys.readouterr().out

    tokens = Tokens.from_file(path)
    ann_holder, bob_holder = tokens.holder(ann), tokens.holder(bob)
    assert ann_holder is not None and bob_holder is not None
    assert ann_holder.roles == {Role.APPROVER, Role.REQUESTER}
    assert ann_holder.expires_at is not None
    assert timedelta(days=29) < ann_holder.expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert bob_holder.expires_at is None
    assert ann not in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ann not in listed and bob not in listed
    lines = listed.splitlines()[1:]
    assert [line.split()[1:3] for line in lines] == [["ann", "approver,requester"], ["bob", "operator"]]
    assert lines[0].split()[0] == token_digest(ann)[:19] + "…" and lines[1].split()[3] == "never"

    assert run("revoke", "ann") == 0
    assert Tokens.from_file(path).holder(ann) is None and Tokens.from_file(path).holder(bob) is not None
    assert run("revoke", "bob") == 1  # the last one
    assert "would leave" in capsys.readouterr().err
    assert run("issue", "cy", "--roles", "requester") == 0
    assert run("revoke", token_digest(bob)[:15]) == 0
    assert Tokens.from_file(path).holder(bob) is None


def test_the_commands_bad_input_gets_a_clear_error(tmp_path, capsys):
    path = tmp_path / "tokens.json"
    run = lambda *args: api_tokens.main(["--file", str(path), *args])  # noqa: E731

    with pytest.raises(SystemExit):
        run("issue", "ann", "--roles", "boss")
    assert "unknown role 'boss': give some of approver, operator, requester" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("issue", "ann", "--roles", "approver", "--expires-in", "3y")
    assert "'3y' is not a duration" in capsys.readouterr().err
    assert run("list") == 1
    assert "cannot read the API tokens file" in capsys.readouterr().err
    assert run("issue", "ann", "--roles", "approver") == 0
    assert run("revoke", "nobody") == 1
    assert "no token in" in capsys.readouterr().err
