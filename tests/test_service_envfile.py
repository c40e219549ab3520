"""The service's environment file: the format systemd and `--env-file` both read, and the
text install writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_telemetryd.service import envfile


def test_reads_the_common_environment_file_forms() -> None:
    text = (
        "# a comment\n"
        "; another\n"
        "\n"
        "POSTHOG_API_KEY=phc_abc\n"
        "  TELEMETRY_ENDPOINT = https://t.example.com  \n"
        "SINGLE='a \"b\" $c'\n"
        'DOUBLE="x \\"y\\" \\\\z"\n'
        "EMPTY=\n"
        "EQUALS=a=b\n"
    )
    assert envfile.parse_env_text(text) == {
        "POSTHOG_API_KEY": "phc_abc",
        "TELEMETRY_ENDPOINT": "https://t.example.com",
        "SINGLE": 'a "b" $c',
        "DOUBLE": 'x "y" \\z',
        "EMPTY": "",
        "EQUALS": "a=b",
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("export KEY=v", "line 2: expected NAME=value"),
        ("no equals sign", "line 2: expected NAME=value"),
        ("1KEY=v", "line 2: expected NAME=value"),
        ("KEY='open", "line 2: unterminated quote"),
    ],
)
def test_a_bad_line_is_named_by_number_without_its_value(line: str, message: str) -> None:
    with pytest.raises(envfile.EnvFileError) as error:
        envfile.parse_env_text(f"OK=1\n{line}\n", "service.env")
    assert str(error.value) == f"service.env, {message}"


values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40
).filter(lambda v: v == v.strip())


@given(st.dictionaries(st.sampled_from(envfile.SENDER_VARIABLES), values))
def test_what_install_writes_reads_back_as_the_same_values(written: dict[str, str]) -> None:
    text = envfile.render_env_file("linux", written)
    assert envfile.parse_env_text(text) == written


def test_masked_hides_only_the_keys() -> None:
    text = envfile.render_env_file(
        "darwin", {"POSTHOG_API_KEY": "phc_secret", "POSTHOG_HOST": "https://eu.i.posthog.com"}
    )
    shown = envfile.masked(text)
    assert "phc_secret" not in shown
    assert "POSTHOG_API_KEY=<hidden: 10 characters>" in shown
    assert "POSTHOG_HOST=https://eu.i.posthog.com" in shown
    assert "launchctl kickstart -k gui/$(id -u)/dev.agent-telemetry.daemon" in shown


def test_load_env_file_sets_values_and_skips_a_missing_file(tmp_path: Path) -> None:
    environ = {"POSTHOG_HOST": "from the shell"}
    assert envfile.load_env_file(tmp_path / "absent.env", environ) == []
    path = tmp_path / "service.env"
    path.write_text("POSTHOG_HOST=from the file\n")
    path.chmod(0o600)
    assert envfile.load_env_file(path, environ) == ["POSTHOG_HOST"]
    assert environ == {"POSTHOG_HOST": "from the file"}  # the file wins, as with systemd


def test_load_env_file_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "service.env"
    path.write_text("TELEMETRY_API_KEY=k\n")
    path.chmod(0o640)
    with pytest.raises(envfile.EnvFileError, match=r"mode 640\); run: chmod 600"):
        envfile.load_env_file(path, {})
