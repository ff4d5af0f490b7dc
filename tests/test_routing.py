"""Host-name routing, pure parts (ratui.engine.routing): the ClientHello server_name and HTTP
Host parsers, sniffing, patterns, the route table and the refusal bytes. ClientHellos are real
ones, made by Python's ssl (OpenSSL) into memory; the parsers are fuzzed with hypothesis."""

from __future__ import annotations

import contextlib
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratui.engine.routing import (
    MAX_SNIFF_BYTES,
    BadRequest,
    Kind,
    Malformed,
    Match,
    NeedMore,
    Routes,
    RouteTable,
    Sniff,
    Sniffed,
    conflicts,
    http_host,
    http_response,
    parse_pattern,
    sniff,
    tls_alert,
    tls_server_name,
)

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def client_hello(server_name: str | None, *, maximum: ssl.TLSVersion | None = None) -> bytes:
    """The first flight of a real TLS client (OpenSSL, via Python's ssl), in memory."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        context.maximum_version = maximum
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_records(hello: bytes, at: int) -> bytes:
    """The same handshake message carried in two TLS records, the first ``at`` bytes long."""
    body = hello[5:]
    first, second = body[:at], body[at:]
    return (
        hello[:3]
        + len(first).to_bytes(2, "big")
        + first
        + hello[:3]
        + len(second).to_bytes(2, "big")
        + second
    )


HELLO = client_hello("Pi.Example.com")


# --------------------------------------------------------------------------- ClientHello


def test_server_name_of_real_client_hellos():
    assert tls_server_name(HELLO) == "pi.example.com"
    assert tls_server_name(client_hello("x.y", maximum=ssl.TLSVersion.TLSv1_2)) == "x.y"
    assert tls_server_name(client_hello(None)) is None
    assert tls_server_name(HELLO + b"more bytes behind it") == "pi.example.com"


def test_client_hello_in_one_byte_pieces_needs_more_until_the_last():
    for end in range(len(HELLO)):
        with pytest.raises(NeedMore):
            tls_server_name(HELLO[:end])
        assert sniff(HELLO[:end]) is None
    assert sniff(HELLO) == Sniffed(Kind.TLS, "pi.example.com")


def test_client_hello_over_two_records():
    for at in (1, 3, 4, 40, len(HELLO) - 6):
        data = split_records(HELLO, at)
        assert tls_server_name(data) == "pi.example.com"
        with pytest.raises(NeedMore):
            tls_server_name(data[:-1])


def test_not_a_client_hello():
    with pytest.raises(Malformed):
        tls_server_name(b"\x17\x03\x03\x00\x05hello")  # application data
    with pytest.raises(Malformed):
        tls_server_name(b"\x16\x02")  # SSL 2 style version
    with pytest.raises(Malformed):
        tls_server_name(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00")  # a ServerHello
    with pytest.raises(Malformed):
        tls_server_name(b"\x16\x03\x01\x00\x00")  # an empty record
    truncated = bytearray(HELLO)
    truncated[8] = 0  # the handshake claims fewer bytes than its fields need
    with pytest.raises(Malformed):
        tls_server_name(bytes(truncated))


def test_sni_that_is_not_a_host_name_is_malformed():
    hello = client_hello("pi.example.com")
    bad = hello.replace(b"pi.example.com", b"pi.exa\xffple.com")
    with pytest.raises(Malformed):
        tls_server_name(bad)
    assert sniff(bad) == Sniffed(Kind.TLS, None)


# --------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize(
    ("head", "host"),
    [
        (b"GET / HTTP/1.1\r\nHost: Blog.Example.com\r\n\r\n", "blog.example.com"),
        (b"GET / HTTP/1.1\r\nhost:blog.example.com:8080\r\n\r\n", "blog.example.com"),
        (b"POST /x HTTP/1.0\r\nA: b\r\nHOST:  a.b. \r\n\r\nbody", "a.b"),
        (b"GET / HTTP/1.1\nHost: lf.example\n\n", "lf.example"),
        (b"GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n", "10.0.0.1"),
        (b"GET / HTTP/1.0\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", None),  # no route names an IPv6 literal
        (b"GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n", None),
        # absolute form (RFC 9112 3.2.2): the target's authority, without userinfo and port
        (b"GET http://B.example.com/x HTTP/1.1\r\n\r\n", "b.example.com"),
        (
            b"GET http://u:p@b.example.com:81?q HTTP/1.1\r\nHost: b.example.com\r\n\r\n",
            "b.example.com",
        ),
        (b"OPTIONS * HTTP/1.1\r\nHost: a.com\r\n\r\n", "a.com"),
    ],
)
def test_http_host(head, host):
    assert http_host(head) == host


def test_http_host_needs_the_whole_head():
    head = b"GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n"
    for end in range(1, len(head)):  # every proper prefix, the last one included
        assert sniff(head[:end]) is None, head[:end]
    assert sniff(head) == Sniffed(Kind.HTTP, "blog.example.com")


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",  # two Hosts
        b"GET / HTTP/1.1\r\nHost: a.com\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",  # empty
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \x0ba.com\x0c\r\n\r\n",  # only SP and HTAB are trimmed
        b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a.com\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9.com\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xe2\x84\xaa.example.com\r\n\r\n",  # the Kelvin sign
        b"GET http://b.example.com/ HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_http_head_is_a_bad_request(head):
    with pytest.raises(BadRequest):
        http_host(head)
    assert sniff(head) == Sniffed(Kind.HTTP, malformed=True)


def test_blank_line_before_the_request_line_is_a_bad_request():
    head = b"\r\nGET / HTTP/1.1\r\nHost: a.com\r\n\r\n"
    assert sniff(head[:2]) is None
    assert sniff(head[:20]) == Sniffed(Kind.HTTP, malformed=True)
    assert sniff(b"\r\n\r\nSSH-2.0-x\r\n") == Sniffed(Kind.OTHER)


def test_not_a_request_line_is_other_traffic():
    head = b"GET /\r\nHost: a.com\r\n\r\n"  # an HTTP/0.9-style request line
    with pytest.raises(Malformed):
        http_host(head)
    assert sniff(head) == Sniffed(Kind.OTHER)


def test_host_names_are_checked_as_ascii_before_lowering():
    for bad in ("\u212a.example.com", "*.\u212a.example.com"):  # lower() makes "k.example.com"
        with pytest.raises(Malformed):
            parse_pattern(bad)


def fed_bytewise(data: bytes) -> tuple[Sniffed | None, Sniff]:
    """``data`` fed to a :class:`Sniff` one byte at a time, asking for a verdict after each."""
    state = Sniff()
    verdict = None
    for byte in data:
        state.feed(bytes((byte,)))
        verdict = state.verdict()
        if verdict is not None:
            break
    return verdict, state


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * MAX_SNIFF_BYTES,  # a head that never ends
        # a ClientHello that claims nearly 16 KiB and is sent one byte at a time
        b"\x16\x03\x01\x40\x00\x01\x00\xff\xff" + b"\x00" * MAX_SNIFF_BYTES,
    ],
    ids=["http", "tls"],
)
def test_sniffing_byte_by_byte_looks_at_each_byte_a_bounded_number_of_times(data):
    verdict, state = fed_bytewise(data)
    assert verdict is not None and verdict.host is None
    assert len(state.buffer) == MAX_SNIFF_BYTES, len(state.buffer)
    assert state.scanned <= 10 * MAX_SNIFF_BYTES, state.scanned


def test_sniff_other_and_limits():
    assert sniff(b"") is None
    assert sniff(b"", final=True) == Sniffed(Kind.OTHER)
    assert sniff(b"SSH-2.0-OpenSSH_9.6\r\n") == Sniffed(Kind.OTHER)
    assert sniff(b"\x00\x01") == Sniffed(Kind.OTHER)
    assert sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == Sniffed(Kind.HTTP, None)
    assert sniff(b"GE") is None
    assert sniff(b"GE", final=True) == Sniffed(Kind.HTTP)
    assert sniff(HELLO[:10], final=True) == Sniffed(Kind.TLS)
    endless = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * MAX_SNIFF_BYTES
    assert sniff(endless) == Sniffed(Kind.HTTP)  # too long to tell: no host, no more waiting
    late_host = endless + b"\r\nHost: a.com\r\n\r\n"
    assert sniff(late_host) == Sniffed(Kind.HTTP)  # bytes past the limit are not read


# --------------------------------------------------------------------------- patterns


def test_patterns():
    assert parse_pattern("Pi.Example.COM.") == "pi.example.com"
    assert parse_pattern("*.Example.com") == "*.example.com"
    assert parse_pattern("10.0.0.1") == "10.0.0.1"
    for bad in ("", "*", "*.", "a.*.com", "*a.com", "a..com", "-a.com", "a b", "é.com", "a" * 64):
        with pytest.raises(Malformed):
            parse_pattern(bad)


def table() -> RouteTable:
    return RouteTable(
        {
            "apex": Routes(sni=("example.com",)),
            "wide": Routes(sni=("*.example.com",), http_host=("*.example.com",)),
            "narrow": Routes(sni=("*.pi.example.com",)),
            "exact": Routes(sni=("cam.pi.example.com",)),
            "web": Routes(http_host=("blog.example.com",)),
        }
    )


@pytest.mark.parametrize(
    ("sniffed", "service"),
    [
        (Sniffed(Kind.TLS, "example.com"), "apex"),
        (Sniffed(Kind.TLS, "www.example.com"), "wide"),
        (Sniffed(Kind.TLS, "a.b.c.example.com"), "wide"),
        (Sniffed(Kind.TLS, "x.pi.example.com"), "narrow"),  # the longest wildcard wins
        (Sniffed(Kind.TLS, "a.x.pi.example.com"), "narrow"),
        (Sniffed(Kind.TLS, "cam.pi.example.com"), "exact"),  # exact beats wildcards
        (Sniffed(Kind.TLS, "pi.example.com"), "wide"),  # *.pi.example.com is not the apex
        (Sniffed(Kind.HTTP, "blog.example.com"), "web"),
        (Sniffed(Kind.HTTP, "other.example.com"), "wide"),
        (Sniffed(Kind.HTTP, "example.com"), None),  # sni patterns do not route HTTP
        (Sniffed(Kind.TLS, "example.org"), None),
        (Sniffed(Kind.TLS, None), None),
        (Sniffed(Kind.OTHER), None),
    ],
)
def test_route_table(sniffed, service):
    match = table().match(sniffed)
    assert (match.service if match else None) == service


def test_default_route_and_labels():
    routes = {"a": Routes(sni=("a.com",)), "d": Routes(default=True)}
    routed = RouteTable(routes)
    assert routed.match(Sniffed(Kind.TLS, "a.com")) == Match("a", "a.com")
    assert routed.match(Sniffed(Kind.TLS, "b.com")) == Match("d", "b.com", default=True)
    assert routed.match(Sniffed(Kind.OTHER)) == Match("d", None, default=True)
    assert Match("a", "a.com").label == "a.com"
    assert Match("d", "b.com", default=True).label == "b.com (default)"
    assert Match("d", None, default=True).label == "(default)"
    assert Routes(sni=("a.com",), http_host=("b.com",), default=True).labels() == (
        "a.com",
        "b.com",
        "default",
    )
    assert not Routes().any


def test_conflicts_name_both_services():
    assert conflicts({"a": Routes(sni=("x.com",)), "b": Routes(http_host=("x.com",))}) == []
    assert conflicts({"a": Routes(sni=("x.com",)), "b": Routes(sni=("x.com",))}) == [
        'sni pattern "x.com" is in both a and b (ambiguous)'
    ]
    assert conflicts({"a": Routes(default=True), "b": Routes(default=True)}) == [
        "default_route = true in more than one service: a, b"
    ]


def test_later_service_wins_a_pattern_claimed_twice():
    routes = {"old": Routes(sni=("x.com",)), "new": Routes(sni=("x.com",))}
    assert RouteTable(routes).match(Sniffed(Kind.TLS, "x.com")) == Match("new", "x.com")


# --------------------------------------------------------------------------- refusals


def test_refusal_bytes():
    response = http_response("421 Misdirected Request")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 421 Misdirected Request\r\n")
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert tls_alert(112) == b"\x15\x03\x03\x00\x02\x02\x70"


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=2048))
def test_parsers_raise_only_their_own_errors(data):
    for parse in (tls_server_name, http_host):
        with contextlib.suppress(NeedMore, Malformed):
            parse(data)
    for final in (False, True):
        verdict = sniff(data, final=final)
        assert verdict is not None or not final


@FUZZ
@given(
    st.sampled_from(
        [
            HELLO,
            split_records(HELLO, 3),
            split_records(HELLO, 50),
            b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n",
            b"GET http://a.com/ HTTP/1.1\r\nHost: b.com\r\n\r\n",
            b"\r\nGET / HTTP/1.0\n\n",
            b"POST / HTTP/1.1\r\nA: b\r\n\r\nbody",
            b"SSH-2.0-x\r\n",
        ]
    ),
    st.lists(st.integers(1, 64), max_size=20),
)
def test_sniffing_in_pieces_gives_the_verdict_of_sniffing_at_once(data, cuts):
    state = Sniff()
    verdict, pos = None, 0
    for size in [*cuts, len(data)]:
        state.feed(data[pos : pos + size])
        pos += size
        verdict = state.verdict(final=pos >= len(data))
        if verdict is not None:
            break
    assert verdict == sniff(data, final=True)


@FUZZ
@given(st.data())
def test_damaged_client_hellos_raise_only_their_own_errors(data):
    hello = bytearray(data.draw(st.sampled_from([HELLO, split_records(HELLO, 50)])))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(hello) - 1))
        hello[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(hello)))
    try:
        name = tls_server_name(bytes(hello[:cut]))
    except (NeedMore, Malformed):
        return
    assert name is None or parse_pattern(name) == name


@FUZZ
@given(st.text(max_size=60), st.binary(max_size=200))
def test_http_heads_raise_only_their_own_errors(host, tail):
    head = b"GET / HTTP/1.1\r\nHost: " + host.encode("utf-8", "surrogatepass") + b"\r\n" + tail
    try:
        name = http_host(head)
    except (NeedMore, Malformed):
        return
    assert name is None or parse_pattern(name) == name
