"""Config of host-name routing (ratui extension ``sni``, ``http_host``, ``default_route``):
what loads, what is refused with a ``FILE: [TABLE] KEY: problem`` line, and how a reload that
adds a routed service is classified."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratui.engine.config import ConfigError, ServiceType, config_diff, parse_config
from ratui.engine.routing import Kind, Match, Routes, RouteTable, Sniffed

pytestmark = pytest.mark.timeout(30)

HEAD = '[server]\nbind_addr = "0.0.0.0:2333"\ndefault_token = "t"\n'


def server(*services: str) -> str:
    return HEAD + "".join(services)


def svc(name: str, body: str, addr: str = "0.0.0.0:443") -> str:
    return f'[server.services.{name}]\nbind_addr = "{addr}"\n{body}\n'


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.toml")
    return str(info.value)


def test_routed_services_share_a_port():
    cfg = parse_config(
        server(
            svc("pi", 'sni = ["Pi.Example.com", "*.pi.example.com."]'),
            svc("nas", 'sni = ["nas.example.com"]\nproxy_protocol = "v2"'),
            svc("rest", "default_route = true"),
            svc("blog", 'http_host = ["blog.example.com"]', "0.0.0.0:80"),
        )
    )
    assert cfg.server is not None
    services = cfg.server.services
    assert services["pi"].sni == ("pi.example.com", "*.pi.example.com")
    assert services["pi"].routes == Routes(sni=("pi.example.com", "*.pi.example.com"))
    assert services["rest"].routes == Routes(default=True)
    assert services["blog"].http_host == ("blog.example.com",)
    assert services["nas"].proxy_protocol == "v2"


def test_rathole_services_are_not_routed():
    cfg = parse_config(server(svc("a", "", "0.0.0.0:1"), svc("b", "", "0.0.0.0:2")))
    assert cfg.server is not None
    assert all(not s.routes.any for s in cfg.server.services.values())


def test_a_routed_service_may_be_alone_on_its_port():
    cfg = parse_config(server(svc("pi", 'sni = ["pi.example.com"]')))
    assert cfg.server is not None and cfg.server.services["pi"].sni == ("pi.example.com",)


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_services_without_routes_may_share_an_address_as_in_rathole(kind):
    """rathole loads them; each listens only while its client is connected (active/standby)."""
    body = f'type = "{kind}"'
    cfg = parse_config(server(svc("active", body), svc("standby", body)))
    assert cfg.server is not None
    assert {s.bind_addr for s in cfg.server.services.values()} == {"0.0.0.0:443"}


def test_routed_services_on_other_ports_or_hosts_do_not_overlap():
    cfg = parse_config(
        server(
            svc("a", 'sni = ["a.com"]', "127.0.0.1:443"),
            svc("b", 'sni = ["b.com"]', "127.0.0.2:443"),
            svc("c", "", "0.0.0.0:444"),
            svc("d", 'type = "udp"', "0.0.0.0:443"),
        )
    )
    assert cfg.server is not None and len(cfg.server.services) == 4


def test_udp_may_use_the_port_number_of_tcp_services():
    cfg = parse_config(
        server(svc("dns", "", "0.0.0.0:53"), svc("dnsu", 'type = "udp"', "0.0.0.0:53"))
    )
    assert cfg.server is not None
    assert cfg.server.services["dnsu"].type is ServiceType.UDP


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        (
            (svc("a", ""), svc("b", 'sni = ["b.com"]')),
            "s.toml: [server.services.a] bind_addr: shared by a, b: each service on a shared "
            "address needs sni, http_host or default_route = true",
        ),
        (
            (svc("a", 'sni = ["x.com"]'), svc("b", 'sni = ["y.com", "X.com"]')),
            's.toml: [server.services.b] bind_addr: 0.0.0.0:443: sni pattern "x.com" is in '
            "both a and b (ambiguous)",
        ),
        (
            (svc("a", "default_route = true"), svc("b", "default_route = true")),
            "s.toml: [server.services.b] bind_addr: 0.0.0.0:443: default_route = true in more "
            "than one service: a, b",
        ),
        (
            (svc("a", 'sni = ["a.com"]', "0.0.0.0:443"), svc("b", 'sni = ["b.com"]', "[::]:443")),
            "s.toml: [server.services.b] bind_addr: 0.0.0.0:443 (a) and [::]:443 (b) overlap "
            "on port 443; routed services share one listener only with the same bind_addr, "
            "spelled the same way",
        ),
        (
            (svc("a", "", "0.0.0.0:443"), svc("b", 'sni = ["b.com"]', "127.0.0.1:443")),
            "s.toml: [server.services.b] bind_addr: 0.0.0.0:443 (a) and 127.0.0.1:443 (b) "
            "overlap on port 443; routed services share one listener only with the same "
            "bind_addr, spelled the same way",
        ),
        (
            (
                svc("a", 'sni = ["a.com"]', "localhost:443"),
                svc("b", 'sni = ["b.com"]', "127.0.0.1:443"),
            ),
            "s.toml: [server.services.b] bind_addr: localhost:443 (a) and 127.0.0.1:443 (b) "
            "overlap on port 443; routed services share one listener only with the same "
            "bind_addr, spelled the same way",
        ),
        (
            (svc("a", 'sni = ["\u212a.example.com"]'),),
            's.toml: [server.services.a] sni: "\u212a.example.com": not a valid host name: '
            "'\u212a.example.com'",
        ),
        (
            (svc("a", 'type = "udp"\nsni = ["a.com"]'),),
            's.toml: [server.services.a] sni: only for TCP services, not type = "udp"',
        ),
        (
            (svc("a", 'type = "udp"\ndefault_route = true'),),
            's.toml: [server.services.a] default_route: only for TCP services, not type = "udp"',
        ),
        (
            (svc("a", 'http_host = ["a.*.com"]'),),
            "s.toml: [server.services.a] http_host: \"a.*.com\": '*' may only be the whole "
            'first label, as in "*.example.com"',
        ),
        (
            (svc("a", 'sni = ["a b"]'),),
            "s.toml: [server.services.a] sni: \"a b\": not a valid host name: 'a b'",
        ),
        (
            (svc("a", 'sni = "a.com"'),),
            "s.toml: [server.services.a] sni: expected a non-empty array of host names, "
            'got "a.com"',
        ),
        (
            (svc("a", "sni = []"),),
            "s.toml: [server.services.a] sni: expected a non-empty array of host names, "
            "got an array",
        ),
        (
            (svc("a", "sni = [1]"),),
            "s.toml: [server.services.a] sni: expected host names (strings), got 1",
        ),
        (
            (svc("a", 'sni = ["a.com", "A.com."]'),),
            's.toml: [server.services.a] sni: "A.com." is listed twice',
        ),
        (
            (svc("a", 'default_route = "yes"'),),
            's.toml: [server.services.a] default_route: expected true or false, got "yes"',
        ),
    ],
)
def test_refused(services, expected):
    assert error(server(*services)) == expected


def test_same_host_for_sni_and_http_on_one_port_is_not_ambiguous():
    cfg = parse_config(server(svc("tls", 'sni = ["a.com"]'), svc("web", 'http_host = ["a.com"]')))
    assert cfg.server is not None and len(cfg.server.services) == 2


def test_reload_adding_a_routed_service_touches_only_it():
    old = parse_config(server(svc("a", 'sni = ["a.com"]'), svc("b", 'sni = ["b.com"]')))
    new = parse_config(
        server(
            svc("a", 'sni = ["a.com"]'), svc("b", 'sni = ["b.com"]'), svc("c", 'sni = ["c.com"]')
        )
    )
    diff = config_diff(old, new)
    assert not diff.restart_server
    assert diff.server_added == ("c",)
    assert diff.server_changed == diff.server_removed == ()
    moved = parse_config(server(svc("a", 'sni = ["a.com", "c.com"]'), svc("b", 'sni = ["b.com"]')))
    assert config_diff(old, moved).server_changed == ("a",)


def test_readme_example_loads(tmp_path):
    """The configs of README "One VPS, two home servers, ..." load, and route as it says."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## One VPS, two home servers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server, pi, nas = (
        parse_config(block.replace("/etc/ratui/token", str(token)), "README.md") for block in blocks
    )
    assert server.server is not None and pi.client is not None and nas.client is not None
    services = server.server.services
    table = RouteTable({n: s.routes for n, s in services.items() if s.bind_addr.endswith(":80")})
    assert table.match(Sniffed(Kind.HTTP, "nas.example.com")) == Match(
        "nas-http", "nas.example.com"
    )
    assert table.match(Sniffed(Kind.HTTP, "x.org")) == Match("pi-http", "x.org", default=True)
    assert set(pi.client.services) | set(nas.client.services) == set(services)
