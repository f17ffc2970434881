import pytest

from paymaster.domain.errors import UnknownPrincipalError
from paymaster.domain.identity import PrincipalKey, principal_key


@pytest.mark.parametrize(
    ("arn", "key"),
    [
        ("arn:aws:iam::111122223333:role/search-api", PrincipalKey("111122223333", "role", "search-api")),
        ("arn:aws:iam::111122223333:role/apps/team/search-api", PrincipalKey("111122223333", "role", "search-api")),
        (
            "arn:aws:sts::111122223333:assumed-role/search-api/i-0123456789",
            PrincipalKey("111122223333", "role", "search-api"),
        ),
        ("arn:aws:iam::111122223333:user/ci/deployer", PrincipalKey("111122223333", "user", "deployer")),
        ("arn:aws-us-gov:iam::111122223333:role/x", PrincipalKey("111122223333", "role", "x")),
    ],
)
def test_assumed_role_session_and_role_with_path_match_on_account_and_name(arn: str, key: PrincipalKey) -> None:
    assert principal_key(arn) == key


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::111122223333:root",
        "arn:aws:sts::111122223333:federated-user/bob",
        "arn:aws:sts::111122223333:assumed-role/only-role",
        "arn:aws:iam::not-an-account:role/x",
        "arn:aws:iam::111122223333:role/",
        "search-api",
        "",
    ],
)
def test_anything_but_a_role_user_or_session_is_no_principal(arn: str) -> None:
    with pytest.raises(UnknownPrincipalError):
        principal_key(arn)
