"""The API tokens file: digests only, each holder named and given roles; a service without tokens does not start."""

import json
import stat

import pytest

from contracts.auth import AuthNotConfigured, AuthSettings, Role, TokenHolder, Tokens, load_tokens, token_digest
from tests.conftest import TEST_TOKENS


def test_the_test_tokens_file_names_each_holder_and_keeps_no_token(tokens_file):
    tokens = Tokens.from_file(tokens_file)

    assert tokens.holder(TEST_TOKENS["approver"]) == TokenHolder(name="approver", roles={Role.APPROVER})
    assert tokens.holder(TEST_TOKENS["admin"]).roles == set(Role)
    assert tokens.holder("test-token-nobody") is None and tokens.holder("") is None and tokens.holder(None) is None
    assert not any(token in tokens_file.read_text() for token in TEST_TOKENS.values())
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "is not JSON"),
        ("[]", "must hold a JSON object"),
        (json.dumps({"plain-token": {"name": "ann", "roles": ["approver"]}}), "store a token's digest, never the token"),
        (json.dumps({token_digest("t"): {"name": "ann", "roles": []}}), "roles: Frozenset should have at least 1 item"),
        (json.dumps({token_digest("t"): {"name": "ann", "roles": ["boss"]}}), "roles.0: Input should be 'requester'"),
        (json.dumps({token_digest("t"): {"name": "", "roles": ["approver"]}}), "name: String should have at least"),
        (json.dumps({}), "holds no tokens"),
    ],
)
def test_a_bad_tokens_file_stops_the_service_with_the_reason(tmp_path, content, problem):
    path = tmp_path / "tokens.json"
    path.write_text(content)

    with pytest.raises(AuthNotConfigured, match=problem):
        load_tokens(AuthSettings(WF_API_TOKENS_FILE=str(path)))


def test_no_tokens_file_stops_the_service_unless_auth_is_turned_off_on_purpose(tmp_path):
    with pytest.raises(AuthNotConfigured, match="set WF_API_TOKENS_FILE .* or WF_AUTH=off"):
        load_tokens(AuthSettings())
    with pytest.raises(AuthNotConfigured, match="cannot read the API tokens file"):
        load_tokens(AuthSettings(WF_API_TOKENS_FILE=str(tmp_path / "missing.json")))

    assert load_tokens(AuthSettings(WF_AUTH="off")) is None
