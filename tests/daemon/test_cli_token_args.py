"""Bearer tokens on the command line, whatever character they start with.

base64url tokens start with '-' one time in 64; argparse reads such a word as
an option and refused ``--token -Xy..`` ("expected one argument"). That broke
``pbftd attest`` in CI once, and would break an admin's
``pbftd status --token "$(cat admin.token)"`` the same way.
"""

import pytest

import config.keys
from config import generate_token, token_sha256
from pbftd.cli import _attach_option_values, build_parser


def _parse(argv):
    return build_parser().parse_args(_attach_option_values(argv))


@pytest.mark.parametrize("command", [
    ["status", "--rpc", "http://127.0.0.1:1/"],
    ["attest", "doc.pdf", "--kind", "judgment", "--case", "(2020)吉0102民初1234号"],
    ["bench", "--rpc", "http://127.0.0.1:1/"],
])
def test_a_token_starting_with_a_dash_is_taken_as_the_value(command):
    args = _parse([*command, "--token", "-Q3x_-9"])
    token = args.token[0] if isinstance(args.token, list) else args.token
    assert token == "-Q3x_-9"


def test_the_option_after_the_token_is_still_parsed():
    args = _parse(["status", "--token", "--looks-like-a-flag", "--rpc", "http://h:1/"])
    assert args.token == "--looks-like-a-flag"
    assert args.rpc == "http://h:1/"


def test_token_equals_form_and_words_after_double_dash_are_untouched():
    assert _attach_option_values(["status", "--token=-a"]) == ["status", "--token=-a"]
    assert _attach_option_values(["x", "--", "--token", "-a"]) == ["x", "--", "--token", "-a"]


def test_a_token_option_with_no_value_is_still_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["status", "--token"])
    assert exc.value.code == 2
    assert "--token: expected one argument" in capsys.readouterr().err


def test_generated_tokens_never_start_with_a_dash(monkeypatch):
    draws = iter(["-starts-with-dash", "Ab-c_d"])
    monkeypatch.setattr(config.keys.secrets, "token_urlsafe", lambda n: next(draws))
    token, digest = generate_token()
    assert token == "Ab-c_d"
    assert digest == token_sha256("Ab-c_d")
