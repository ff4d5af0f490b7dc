"""ratui.tomledit: edits of a commented config keep every comment, blank line and key order;
each test compares the whole text with the expected one."""

from __future__ import annotations

import base64

import pytest

from ratui import tomledit
from ratui.engine.config import parse_config

KEY = base64.b64encode(bytes(range(32))).decode()  # a public key (32 bytes)

CONFIG = """\
# ratui on the VPS
[server]
bind_addr = "0.0.0.0:2333"  # clients connect here
default_token = "a long secret"

# the web site
[server.services.web]
bind_addr = "0.0.0.0:8080"  # visitors come here
nodelay = true

# ssh to the box at home
[server.services.ssh]
bind_addr = "0.0.0.0:5202"
token = "another secret"  # its own token

[client]
remote_addr = "vps.example.com:2333"  # the VPS

[client.services.nas]
local_addr = "127.0.0.1:5000"  # the NAS web UI
token = "nas token"
"""


def edited(edit, *args, valid: bool = True) -> str:  # type: ignore[no-untyped-def]
    doc = tomledit.parse(CONFIG)
    result = edit(doc, *args).as_string()
    assert doc.as_string() == CONFIG  # the argument is left alone
    if valid:
        parse_config(result)  # and the result is still a valid config
    return result


def test_lists_services_and_fields_in_file_order() -> None:
    doc = tomledit.parse(CONFIG)
    assert tomledit.services(doc, "server") == ["web", "ssh"]
    assert tomledit.services(doc, "client") == ["nas"]
    assert tomledit.service_fields(doc, "server", "web") == {
        "bind_addr": "0.0.0.0:8080",
        "nodelay": True,
    }
    assert tomledit.transport_fields(doc, "server") == {}


def test_changing_a_value_keeps_its_line_comment_and_place() -> None:
    result = edited(tomledit.set_service, "client", "nas", {"local_addr": "127.0.0.1:5001"})
    assert result == CONFIG.replace(
        'local_addr = "127.0.0.1:5000"  # the NAS web UI',
        'local_addr = "127.0.0.1:5001"  # the NAS web UI',
    )


def test_new_keys_go_after_the_last_key_above_the_next_tables_comment() -> None:
    result = edited(
        tomledit.set_service, "server", "web", {"type": "tcp", "token": "t", "nodelay": None}
    )
    assert result == CONFIG.replace(
        "visitors come here\nnodelay = true\n", 'visitors come here\ntype = "tcp"\ntoken = "t"\n'
    )


def test_removing_a_service_takes_its_comment_and_keeps_the_next_ones() -> None:
    first = edited(tomledit.remove_service, "server", "web")
    assert first == CONFIG.replace(
        '# the web site\n[server.services.web]\nbind_addr = "0.0.0.0:8080"  # visitors come '
        "here\nnodelay = true\n\n",
        "",
    )
    last = edited(tomledit.remove_service, "server", "ssh")
    assert last == CONFIG.replace(
        '# ssh to the box at home\n[server.services.ssh]\nbind_addr = "0.0.0.0:5202"\n'
        'token = "another secret"  # its own token\n\n',
        "",
    )
    # (a client without services is not a valid config, but the edit is still exact)
    only = edited(tomledit.remove_service, "client", "nas", valid=False)
    assert only == CONFIG.split("\n[client.services.nas]")[0]


def test_adding_a_service_goes_after_the_last_one_of_its_role() -> None:
    server = edited(
        tomledit.add_service,
        "server",
        "game",
        {"type": "udp", "bind_addr": "0.0.0.0:27015", "token": None},
    )
    assert server == CONFIG.replace(
        "its own token\n\n[client]",
        'its own token\n\n[server.services.game]\ntype = "udp"\nbind_addr = "0.0.0.0:27015"\n'
        "\n[client]",
    )
    client = edited(
        tomledit.add_service, "client", "cam", {"local_addr": "127.0.0.1:554", "token": "t"}
    )
    assert client == CONFIG + '\n[client.services.cam]\nlocal_addr = "127.0.0.1:554"\ntoken = "t"\n'


def test_adding_the_first_service_of_a_role() -> None:
    text = '[client]\nremote_addr = "vps:2333"  # the VPS\n'
    doc = tomledit.add_service(
        tomledit.parse(text), "client", "nas", {"local_addr": "127.0.0.1:5000", "token": "t"}
    )
    assert doc.as_string() == text + (
        '\n[client.services.nas]\nlocal_addr = "127.0.0.1:5000"\ntoken = "t"\n'
    )


def test_renaming_keeps_the_place_the_keys_and_the_comments() -> None:
    result = edited(tomledit.rename_service, "server", "web", "www")
    assert result == CONFIG.replace("[server.services.web]", "[server.services.www]")
    quoted = edited(tomledit.rename_service, "server", "ssh", "home ssh")
    assert quoted == CONFIG.replace("[server.services.ssh]", '[server.services."home ssh"]')


def test_a_name_already_taken_is_refused() -> None:
    doc = tomledit.parse(CONFIG)
    with pytest.raises(ValueError, match="already has a service named 'ssh'"):
        tomledit.rename_service(doc, "server", "web", "ssh")
    with pytest.raises(ValueError, match="already has a service named 'web'"):
        tomledit.add_service(doc, "server", "web", {"bind_addr": "0.0.0.0:1"})


def test_transport_tables_are_added_after_the_roles_services() -> None:
    result = edited(
        tomledit.set_transport,
        "client",
        "noise",
        {"noise": {"remote_public_key": KEY, "pattern": ""}, "tls": {"hostname": ""}},
    )
    assert result == CONFIG + (
        '\n[client.transport]\ntype = "noise"\n'
        f'\n[client.transport.noise]\nremote_public_key = "{KEY}"\n'
    )
    # Plain tcp with nothing else to say adds nothing.
    assert edited(tomledit.set_transport, "client", "tcp", {"noise": {"pattern": ""}}) == CONFIG


def test_changing_an_existing_transport_keeps_its_comments() -> None:
    text = CONFIG + (
        '\n[client.transport]\ntype = "noise"  # encrypted\n'
        '[client.transport.noise]\nremote_public_key = "old="  # the server\'s\n'
    )
    doc = tomledit.set_transport(
        tomledit.parse(text), "client", "noise", {"noise": {"remote_public_key": KEY}}
    )
    assert doc.as_string() == text.replace('"old="', f'"{KEY}"')


SPLIT = """\
[server]
bind_addr = "0.0.0.0:2333"
default_token = "a long secret"

[server.services.a]
bind_addr = "0.0.0.0:8001"

[client]
remote_addr = "vps.example.com:2333"

[client.services.n]
local_addr = "127.0.0.1:80"
token = "n token"

# b, written after the client
[server.services.b]
bind_addr = "0.0.0.0:8002"
"""


def split_edit(edit, *args) -> str:  # type: ignore[no-untyped-def]
    result = edit(tomledit.parse(SPLIT), *args).as_string()
    parse_config(result)
    return result


def test_a_role_split_over_the_file_is_edited_where_its_lines_are() -> None:
    """``[server]`` ... ``[client]`` ... ``[server.services.b]``: tomlkit's out-of-order
    proxy; every edit still keeps the rest of the text."""
    doc = tomledit.parse(SPLIT)
    assert tomledit.services(doc, "server") == ["a", "b"]
    assert tomledit.service_fields(doc, "server", "b") == {"bind_addr": "0.0.0.0:8002"}
    added = split_edit(tomledit.add_service, "server", "c", {"bind_addr": "0.0.0.0:8003"})
    assert added == SPLIT + '\n[server.services.c]\nbind_addr = "0.0.0.0:8003"\n'
    renamed = split_edit(tomledit.rename_service, "server", "b", "bee")
    assert renamed == SPLIT.replace("[server.services.b]", "[server.services.bee]")
    changed = split_edit(tomledit.set_service, "server", "b", {"bind_addr": "0.0.0.0:9"})
    assert changed == SPLIT.replace("0.0.0.0:8002", "0.0.0.0:9")
    removed = split_edit(tomledit.remove_service, "server", "b")
    assert removed == SPLIT[: SPLIT.index("\n# b,")]
    first_removed = split_edit(tomledit.remove_service, "server", "a")
    assert first_removed == SPLIT.replace('[server.services.a]\nbind_addr = "0.0.0.0:8001"\n\n', "")
    noise = {"noise": {"local_private_key": KEY}}
    transport = split_edit(tomledit.set_transport, "server", "noise", noise)
    assert tomledit.transport_fields(tomledit.parse(transport), "server")["type"] == "noise"
    assert transport.replace(transport[transport.index("[server.transport]") :], "") in SPLIT


def test_inline_table_services_are_listed_and_edited() -> None:
    text = (
        '[server]\nbind_addr = "0.0.0.0:2333"\ndefault_token = "t"\n\n[server.services]\n'
        'web = { bind_addr = "0.0.0.0:80" }  # the site\nssh = { bind_addr = "0.0.0.0:22" }\n'
    )
    doc = tomledit.parse(text)
    assert tomledit.services(doc, "server") == ["web", "ssh"]
    renamed = tomledit.rename_service(doc, "server", "web", "site").as_string()
    assert renamed == text.replace("web =", "site =")
    changed = tomledit.set_service(doc, "server", "ssh", {"bind_addr": "0.0.0.0:23"})
    assert changed.as_string() == text.replace("0.0.0.0:22", "0.0.0.0:23")
    removed = tomledit.remove_service(doc, "server", "web").as_string()
    assert removed == text.replace('web = { bind_addr = "0.0.0.0:80" }  # the site\n', "")
    parse_config(removed)


def test_adding_to_services_written_as_one_inline_table_is_refused() -> None:
    text = (
        '[server]\nbind_addr = "0.0.0.0:2333"\ndefault_token = "t"\n'
        'services = { web = { bind_addr = "0.0.0.0:80" } }\n'
    )
    with pytest.raises(ValueError, match="raw TOML"):
        tomledit.add_service(tomledit.parse(text), "server", "ssh", {"bind_addr": "0.0.0.0:22"})
