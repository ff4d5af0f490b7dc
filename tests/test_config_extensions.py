"""ratui's config extensions (README "ratui extensions"): ``${VAR}`` expansion, token files and
``proxy_protocol``; and that rathole's own example configs mean the same as before."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from ratui.engine.config import (
    ConfigError,
    ProxyProtocol,
    ServiceType,
    config_diff,
    file_permissions_warning,
    holds_secrets,
    load_config,
    parse_config,
    token_files,
)

pytestmark = pytest.mark.timeout(30)

VENDOR = Path(__file__).resolve().parent.parent.parent / "shared" / "rathole" / "vendor"
RATHOLE_TARBALL = VENDOR / "rathole-0.5.0.tar.gz"

SERVER = """
[server]
bind_addr = "0.0.0.0:2333"
{top}
[server.services.web]
bind_addr = "0.0.0.0:8080"
{svc}
"""

CLIENT = """
[client]
remote_addr = "example.com:2333"
{top}
[client.services.web]
local_addr = "127.0.0.1:80"
{svc}
"""


def server(top: str = 'default_token = "t"', svc: str = "", env: dict | None = None):
    return parse_config(SERVER.format(top=top, svc=svc), "s.toml", env=env or {})


def error(text: str, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml", env=env or {})
    return str(info.value)


# --------------------------------------------------------------------------- ${VAR}


def test_env_expansion_in_token_and_addresses():
    env = {"RATHOLE_TOKEN": "s3cret", "PORT": "9000"}
    cfg = parse_config(
        CLIENT.format(top='default_token = "${RATHOLE_TOKEN}"', svc="").replace(
            "127.0.0.1:80", "127.0.0.1:${PORT}"
        ),
        "c.toml",
        env=env,
    )
    assert cfg.client is not None
    assert cfg.client.default_token == "s3cret"
    assert cfg.client.services["web"].token == "s3cret"
    assert cfg.client.services["web"].local_addr == "127.0.0.1:9000"


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "x", "B": "y"}, "xy"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),  # as in the shell: unset or empty
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A}", {"A": ""}, ""),
        ("$$", {}, "$"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("$$$$", {}, "$$"),
        ("a$b", {}, "a$b"),  # a "$" not followed by "{" or "$" stays as written
        ("end$", {}, "end$"),
        ("${A}", {"A": "has ${B} inside"}, "has ${B} inside"),  # expanded once, not again
    ],
)
def test_env_expansion_rules(value, env, expected):
    text = (
        '[server]\nbind_addr = "a:1"\ndefault_token = "t"\n'
        f'[server.services.web]\nbind_addr = "a:2"\ntoken = "{value}"\n'
    )
    cfg = parse_config(text, "x.toml", env=env)
    assert cfg.server is not None
    assert cfg.server.services["web"].token == expected


def test_unset_variable_names_file_table_key_and_variable():
    assert (
        error(SERVER.format(top='default_token = "t"', svc='token = "${RATHOLE_TOKEN}"'))
        == "x.toml: [server.services.web] token: environment variable RATHOLE_TOKEN is not set"
        " (and no default)"
    )


def test_unset_variable_in_nested_transport_table():
    text = SERVER.format(top='default_token = "t"', svc="") + (
        '[server.transport]\ntype = "noise"\n[server.transport.noise]\n'
        'local_private_key = "${NOISE_KEY}"\n'
    )
    assert error(text) == (
        "x.toml: [server.transport.noise] local_private_key: environment variable NOISE_KEY"
        " is not set (and no default)"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("${", 'unclosed "${" (write "$$" for a "$")'),
        ("${A", 'unclosed "${" (write "$$" for a "$")'),
        ("${}", 'bad environment reference "${}"'),
        ("${1A}", 'bad environment reference "${1A}"'),
        ("${A-b}", 'bad environment reference "${A-b}"'),
    ],
)
def test_bad_references(value, problem):
    msg = error(SERVER.format(top="", svc=f'token = "{value}"'))
    assert msg.startswith(f"x.toml: [server.services.web] token: {problem}")


def test_secret_values_never_printed():
    # The value of a variable shows up in no error, even when the expanded value is invalid.
    env = {"TOKEN": "s3cret-value", "ADDR": "s3cret-addr"}
    msg = error(SERVER.format(top='default_token = "${TOKEN}"', svc='token = "${MISSING}"'), env)
    assert "s3cret" not in msg
    cfg = server(top='default_token = "${TOKEN}"', env=env)
    assert "s3cret" not in repr(cfg)


def test_keys_are_not_expanded():
    msg = error('[server]\nbind_addr = "a:1"\n"${X}" = 1\nservices = {}\n', {"X": "default_token"})
    assert "unknown key" in msg


def test_parse_config_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("RATUI_TEST_TOKEN", "from-env")
    cfg = parse_config(SERVER.format(top='default_token = "${RATUI_TEST_TOKEN}"', svc=""))
    assert cfg.server is not None and cfg.server.default_token == "from-env"


def rathole_examples() -> list[tuple[str, str]]:
    if not RATHOLE_TARBALL.exists():
        pytest.skip(f"rathole source not found at {RATHOLE_TARBALL}")
    out = []
    with tarfile.open(RATHOLE_TARBALL) as tar:
        for member in tar.getmembers():
            name = member.name
            if name.endswith(".toml") and not name.endswith("Cargo.toml") and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out.append((name, f.read().decode("utf-8")))
    return sorted(out)


def test_rathole_examples_have_no_dollar_and_mean_the_same():
    """rathole's own configs hold no "$", so expansion cannot change them; and they load to
    the same Config whatever the environment holds."""
    examples = rathole_examples()
    assert examples
    hostile = {k: "EXPANDED" for k in ("HOME", "PATH", "TOKEN", "RATHOLE_TOKEN", "A", "B")}
    loaded = 0
    for name, text in examples:
        assert "$" not in text, name
        try:
            plain = parse_config(text, name, env={})
        except ConfigError as e:
            # An example ratui refuses (it is stricter) must be refused the same way.
            assert error_of(text, name, hostile) == str(e)
            continue
        assert parse_config(text, name, env=hostile) == plain
        loaded += 1
    assert loaded >= 10


def error_of(text: str, name: str, env: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, name, env=env)
    return str(info.value)


# --------------------------------------------------------------------------- token files


def secret(tmp_path: Path, text: str, name: str = "token", mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("content", ["s3cret\n", "s3cret", "s3cret\r\n"])
def test_service_token_file(tmp_path, content):
    path = secret(tmp_path, content)
    cfg = server(svc=f'token_file = "{path}"')
    assert cfg.server is not None
    assert cfg.server.services["web"].token == "s3cret"
    assert cfg.server.services["web"].token_file == path
    assert token_files(cfg) == (path,)


def test_only_one_trailing_newline_stripped(tmp_path):
    path = secret(tmp_path, "s3cret\n\n")
    cfg = server(svc=f'token_file = "{path}"')
    assert cfg.server is not None and cfg.server.services["web"].token == "s3cret\n"


def test_default_token_file_server_and_client(tmp_path):
    path = secret(tmp_path, "dflt\n")
    cfg = server(top=f'default_token_file = "{path}"')
    assert cfg.server is not None
    assert cfg.server.default_token == "dflt"
    assert cfg.server.services["web"].token == "dflt"
    assert cfg.server.default_token_file == path
    c = parse_config(CLIENT.format(top=f'default_token_file = "{path}"', svc=""), "c", env={})
    assert c.client is not None and c.client.services["web"].token == "dflt"
    assert token_files(c) == (path,)


def test_service_token_file_beats_default(tmp_path):
    own = secret(tmp_path, "own\n", "own")
    cfg = server(top='default_token = "dflt"', svc=f'token_file = "{own}"')
    assert cfg.server is not None and cfg.server.services["web"].token == "own"


def test_token_file_path_from_environment(tmp_path):
    secret(tmp_path, "s3cret\n")
    cfg = server(svc='token_file = "${SECRETS}/token"', env={"SECRETS": str(tmp_path)})
    assert cfg.server is not None and cfg.server.services["web"].token == "s3cret"


def test_token_and_token_file_together_refused(tmp_path):
    path = secret(tmp_path, "s3cret\n")
    assert error(SERVER.format(top="", svc=f'token = "x"\ntoken_file = "{path}"')) == (
        "x.toml: [server.services.web] token_file: set together with token; use exactly one of them"
    )
    assert error(CLIENT.format(top=f'default_token = "x"\ndefault_token_file = "{path}"', svc=""))
    assert "[client] default_token_file: set together with default_token" in error(
        CLIENT.format(top=f'default_token = "x"\ndefault_token_file = "{path}"', svc="")
    )


def test_unreadable_token_file_names_key_and_path(tmp_path):
    missing = tmp_path / "nope"
    assert error(SERVER.format(top="", svc=f'token_file = "{missing}"')) == (
        f'x.toml: [server.services.web] token_file: cannot read "{missing}": No such file or'
        " directory"
    )
    assert error(SERVER.format(top=f'default_token_file = "{tmp_path}"', svc="")) == (
        f'x.toml: [server] default_token_file: cannot read "{tmp_path}": Is a directory'
    )


def test_empty_or_binary_token_file_refused(tmp_path):
    empty = secret(tmp_path, "\n", "empty")
    assert error(SERVER.format(top="", svc=f'token_file = "{empty}"')).endswith(
        f'token_file: "{empty}" is empty'
    )
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe")
    assert error(SERVER.format(top="", svc=f'token_file = "{binary}"')).endswith(
        f'token_file: "{binary}" is not UTF-8 text'
    )


def test_token_file_content_never_printed(tmp_path):
    path = secret(tmp_path, "s3cret-value\n")
    cfg = server(svc=f'token_file = "{path}"')
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in (file_permissions_warning(cfg) or "")


def test_warns_when_others_may_read_token_file(tmp_path):
    loose = secret(tmp_path, "s3cret\n", "loose", 0o644)
    tight = secret(tmp_path, "s3cret\n", "tight", 0o600)
    conf = tmp_path / "server.toml"
    conf.write_text(SERVER.format(top=f'default_token_file = "{tight}"', svc=""))
    conf.chmod(0o600)
    assert file_permissions_warning(load_config(conf)) is None
    conf.write_text(
        SERVER.format(top=f'default_token_file = "{tight}"', svc=f'token_file = "{loose}"')
    )
    warning = file_permissions_warning(load_config(conf))
    assert warning == (
        f"token file {loose} may be read or changed by other users (mode 0644);"
        f" restrict it with: chmod 600 {loose}"
    )


def test_reload_rereads_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("one\n")
    conf = tmp_path / "server.toml"
    conf.write_text(SERVER.format(top="", svc=f'token_file = "{path}"'))
    old = load_config(conf)
    assert config_diff(old, load_config(conf)).unchanged
    path.write_text("two\n")
    new = load_config(conf)
    assert new.server is not None and new.server.services["web"].token == "two"
    diff = config_diff(old, new)
    assert diff.server_changed == ("web",) and not diff.restart_server


def test_default_token_file_change_restarts_role_like_default_token(tmp_path):
    path = tmp_path / "token"
    path.write_text("one\n")
    conf = tmp_path / "server.toml"
    conf.write_text(SERVER.format(top=f'default_token_file = "{path}"', svc=""))
    old = load_config(conf)
    path.write_text("two\n")
    assert config_diff(old, load_config(conf)).restart_server


# --------------------------------------------------------------------------- proxy_protocol


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_key(version):
    cfg = server(svc=f'proxy_protocol = "{version}"')
    assert cfg.server is not None
    assert cfg.server.services["web"].proxy_protocol is ProxyProtocol(version)


def test_proxy_protocol_default_off():
    cfg = server()
    assert cfg.server is not None and cfg.server.services["web"].proxy_protocol is None


def test_proxy_protocol_bad_value():
    assert error(SERVER.format(top='default_token = "t"', svc='proxy_protocol = "v3"')) == (
        'x.toml: [server.services.web] proxy_protocol: expected "v1" or "v2", got "v3"'
    )
    assert "expected" in error(SERVER.format(top='default_token = "t"', svc="proxy_protocol = 1"))


def test_proxy_protocol_refused_on_udp():
    text = SERVER.format(top='default_token = "t"', svc='type = "udp"\nproxy_protocol = "v2"')
    assert error(text) == (
        'x.toml: [server.services.web] proxy_protocol: only for TCP services, not type = "udp"'
    )
    ok = server(svc='type = "tcp"\nproxy_protocol = "v1"')
    assert ok.server is not None and ok.server.services["web"].type is ServiceType.TCP


def test_proxy_protocol_is_server_only():
    msg = error(CLIENT.format(top='default_token = "t"', svc='proxy_protocol = "v1"'))
    assert msg.startswith("x.toml: [client.services.web] proxy_protocol: unknown key")


def test_proxy_protocol_change_is_a_service_change():
    old, new = server(), server(svc='proxy_protocol = "v2"')
    diff = config_diff(old, new)
    assert diff.server_changed == ("web",) and not diff.restart_server


def test_os_environ_untouched():
    before = dict(os.environ)
    server(top='default_token = "${NOPE:-x}"')
    assert dict(os.environ) == before


def test_config_with_only_token_files_holds_no_secret(tmp_path):
    path = secret(tmp_path, "s3cret\n")
    assert not holds_secrets(server(top=f'default_token_file = "{path}"'))
    assert not holds_secrets(server(top="", svc=f'token_file = "{path}"'))
    assert holds_secrets(server(top=f'default_token_file = "{path}"', svc='token = "x"'))
    assert holds_secrets(server())
