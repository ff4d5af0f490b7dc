"""Edits of a rathole config as a tomlkit document, for the in-app config editor.

Each edit returns a new document (its argument is left alone) and keeps what a person
wrote: comments (on their own lines and at the end of a line), blank lines, key order and
quoting. The comment lines directly above a ``[server.services.NAME]`` header belong to
that service: removing the service removes them, and a service added after the last one
goes below the comments that introduce the next table.

tomlkit keeps the lines between a table's last key and the next header (blank lines,
comments) at the end of the previous table's body; the "gap" helpers below move them so they
stay in front of the header they introduce.

A role may be split over the file (``[server]`` ... ``[client]`` ... ``[server.services.b]``),
which tomlkit shows as one out-of-order proxy over several tables; the edits work on those
tables themselves ("parts", in file order), so each change lands where its lines are. A
service may also be an inline table (``web = { bind_addr = "..." }``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec

import tomlkit
from tomlkit.container import Container
from tomlkit.items import Comment, InlineTable, Null, SingleKey, Table, Whitespace

ROLES = ("server", "client")
#: The address key a service has in each role.
ADDR_KEY = {"server": "bind_addr", "client": "local_addr"}
#: Keys of ``[ROLE.transport.*]`` that the editor's forms change, per sub-table.
TRANSPORT_KEYS = {
    "noise": ("pattern", "local_private_key", "remote_public_key"),
    "tls": ("hostname", "trusted_root", "pkcs12", "pkcs12_password"),
    "websocket": ("tls",),
}

#: A field value: None (or "") removes the key.
Value = str | bool | int | None


def parse(text: str) -> tomlkit.TOMLDocument:
    return tomlkit.parse(text)


_P = ParamSpec("_P")
Edit = Callable[Concatenate[tomlkit.TOMLDocument, _P], None]


def _edit(
    change: Edit[_P],
) -> Callable[Concatenate[tomlkit.TOMLDocument, _P], tomlkit.TOMLDocument]:
    """Make ``change`` (which works on the document in place) a pure function: it gets a
    copy, and the result is parsed again so tomlkit's indexes match the text."""

    @functools.wraps(change)
    def pure(
        doc: tomlkit.TOMLDocument, *args: _P.args, **kwargs: _P.kwargs
    ) -> tomlkit.TOMLDocument:
        copy = tomlkit.parse(doc.as_string())
        change(copy, *args, **kwargs)
        return tomlkit.parse(copy.as_string())

    return pure


#: A service: ``[ROLE.services.NAME]`` or ``NAME = { ... }`` under ``[ROLE.services]``.
Service = Table | InlineTable


def _parts(container: Container, key: str) -> list[Table]:
    """The tables under ``key`` in ``container``, in file order: one, or several where the
    file splits it."""
    return [v for k, v in container.body if k is not None and k.key == key and isinstance(v, Table)]


def _roles(doc: tomlkit.TOMLDocument, role: str) -> list[Table]:
    if role not in ROLES:
        raise ValueError(f"role must be server or client, not {role!r}")
    return _parts(doc, role)


def _role(doc: tomlkit.TOMLDocument, role: str) -> Table | None:
    """The role's first table: where a new key or table of the role goes."""
    return next(iter(_roles(doc, role)), None)


def _services_tables(doc: tomlkit.TOMLDocument, role: str) -> list[Table]:
    return [part for table in _roles(doc, role) for part in _parts(table.value, "services")]


def _entries(doc: tomlkit.TOMLDocument, role: str) -> list[tuple[Table, str, Service]]:
    """(services table holding it, name, service) for each service, in file order."""
    return [
        (table, key.key, value)
        for table in _services_tables(doc, role)
        for key, value in table.value.body
        if key is not None and isinstance(value, (Table, InlineTable))
    ]


def services(doc: tomlkit.TOMLDocument, role: str) -> list[str]:
    """The names of ``role``'s services, in file order."""
    return [name for _, name, _ in _entries(doc, role)]


def service_fields(doc: tomlkit.TOMLDocument, role: str, name: str) -> dict[str, Any]:
    """The keys of ``[ROLE.services.NAME]`` as plain Python values."""
    return dict(_service(doc, role, name).unwrap())


def _transport(doc: tomlkit.TOMLDocument, role: str) -> Table | None:
    return next((t for table in _roles(doc, role) for t in _parts(table.value, "transport")), None)


def transport_fields(doc: tomlkit.TOMLDocument, role: str) -> dict[str, Any]:
    """``[ROLE.transport]`` as plain values (``{}`` when the table is absent)."""
    transport = _transport(doc, role)
    return dict(transport.unwrap()) if transport is not None else {}


def _locate(doc: tomlkit.TOMLDocument, role: str, name: str) -> tuple[Table, Service]:
    """The services table holding service ``name``, and the service."""
    for table, key, service in _entries(doc, role):
        if key == name:
            return table, service
    raise KeyError(f"no service {name!r} in [{role}]")


def _service(doc: tomlkit.TOMLDocument, role: str, name: str) -> Service:
    return _locate(doc, role, name)[1]


# --------------------------------------------------------------------------- container surgery


def _live(container: Container) -> list[int]:
    """Indices of the body entries that render (deletions leave Null placeholders)."""
    return [i for i, (_, item) in enumerate(container.body) if not isinstance(item, Null)]


def _insert_keyless(container: Container, index: int, items: list[Any]) -> None:
    """Insert comment/whitespace items at ``index`` of the body, keeping tomlkit's key index
    (which maps keys to body positions) in step."""
    if not items:
        return
    shift = len(items)
    index_map = container._map  # tomlkit has no public way to insert keyless items mid-body
    for key, at in list(index_map.items()):
        if isinstance(at, tuple):
            index_map[key] = tuple(i + shift if i >= index else i for i in at)
        elif at >= index:
            index_map[key] = at + shift
    container.body[index:index] = [(None, item) for item in items]


def _gap(container: Container, end: int) -> list[int]:
    """Indices of the blank lines and comments right before body position ``end`` (the lines
    between the last key or table before it and whatever renders at ``end``)."""
    found: list[int] = []
    for i in reversed(range(end)):
        key, item = container.body[i]
        if isinstance(item, Null):
            continue
        if key is not None or not isinstance(item, (Whitespace, Comment)):
            break
        found.append(i)
    return sorted(found)


def _take(container: Container, indices: list[int]) -> list[Any]:
    taken = [container.body[i][1] for i in indices]
    for i in indices:
        container.body[i] = (None, Null())
    return taken


def _tail(table: Table) -> Container:
    """The container whose last lines render right before the next table after ``table``:
    ``table``'s own body, or that of its last sub-table, recursively."""
    container = table.value
    while live := _live(container):
        last = container.body[live[-1]][1]
        if not isinstance(last, Table):
            break
        container = last.value
    return container


def _before(doc: tomlkit.TOMLDocument, role: str, name: str) -> tuple[Container, int]:
    """Where the lines right above ``[ROLE.services.NAME]``'s header live: (container, end)
    with the lines being the gap before body position ``end`` of ``container``."""
    services_table, _ = _locate(doc, role, name)
    body = services_table.value.body
    index = next(i for i, (k, _) in enumerate(body) if k is not None and k.key == name)
    previous = [v for k, v in body[:index] if k is not None and isinstance(v, Table)]
    if previous:
        tail = _tail(previous[-1])
        return tail, len(tail.body)
    role_table = _holder(doc, role, services_table)
    at = next(i for i, (_, v) in enumerate(role_table.value.body) if v is services_table)
    if at == 0 and role_table.is_super_table():
        # A split-off ``[ROLE.services.NAME]``: its lines end the table before it.
        index = next(i for i, (_, v) in enumerate(doc.body) if v is role_table)
        earlier = [v for _, v in doc.body[:index] if isinstance(v, Table)]
        if earlier:
            tail = _tail(earlier[-1])
            return tail, len(tail.body)
    return role_table.value, at


def _holder(doc: tomlkit.TOMLDocument, role: str, services_table: Table) -> Table:
    """The table of ``role`` that holds ``services_table``."""
    return next(
        t
        for t in _roles(doc, role)
        if any(p is services_table for p in _parts(t.value, "services"))
    )


def _last_key_index(container: Container) -> int:
    """Body position just after the last key/value (or 0): where a new key goes, above the
    lines that introduce the next table."""
    last = -1
    for i, (key, item) in enumerate(container.body):
        if key is not None and not isinstance(item, (Table, Null)):
            last = i
    return last + 1


def _own_gap(table: Table) -> list[Any]:
    """Take the lines after ``table``'s last key: they introduce the table that follows."""
    tail = _tail(table)
    return _take(tail, _gap(tail, len(tail.body)))


def _append_table(parent: Table, key: str | SingleKey, table: Table) -> None:
    """Append ``table`` as the last sub-table of ``parent``. The lines that introduced the
    table following ``parent`` move below the new one, and a blank line separates the new
    header from what precedes it."""
    carried = _own_gap(parent)
    tail = _tail(parent)
    if _live(tail):
        tail.append(None, tomlkit.nl())
    for item in carried:
        table.value.append(None, item)
    parent.append(key, table)


# --------------------------------------------------------------------------- services


def _set_keys(table: Table, fields: Mapping[str, Value]) -> None:
    """Set, change or remove (value None or "") keys of ``table``: a changed key keeps its
    place and its end-of-line comment, a new key goes after the last one."""
    container = table.value
    for key, value in fields.items():
        absent = value is None or value == ""
        if key in table:
            if absent:
                del table[key]
            elif table[key] != value:
                table[key] = value
        elif not absent:
            at = _last_key_index(container)
            if at < len(container.body):
                container._insert_at(at, key, value)
            else:
                table.add(key, value)


@_edit
def set_service(
    doc: tomlkit.TOMLDocument, role: str, name: str, fields: Mapping[str, Value]
) -> None:
    """Change keys of an existing service (see :func:`_set_keys` for the rules)."""
    _set_keys(_service(doc, role, name), fields)


@_edit
def add_service(
    doc: tomlkit.TOMLDocument, role: str, name: str, fields: Mapping[str, Value]
) -> None:
    """Add ``[ROLE.services.NAME]`` after the role's last service (creating ``[ROLE]``'s
    services if there are none), with the non-empty ``fields`` in their given order."""
    if name in services(doc, role):
        raise ValueError(f"[{role}] already has a service named {name!r}")
    role_table = _role(doc, role)
    if role_table is None:
        raise ValueError(f"the config has no [{role}] table")
    table = tomlkit.table()
    for key, value in fields.items():
        if value is not None and value != "":
            table.add(key, value)
    services_tables = _services_tables(doc, role)
    if any(
        k is not None and k.key == "services" and not isinstance(v, Table)
        for part in _roles(doc, role)
        for k, v in part.value.body
    ):
        raise ValueError(
            f"[{role}] services is one inline table here: add a service in the raw TOML (ctrl+t)"
        )
    if not services_tables:
        services_table = tomlkit.table(is_super_table=True)
        _append_table(role_table, "services", services_table)
        services_table.append(SingleKey(name), table)
    else:
        _append_table(services_tables[-1], SingleKey(name), table)


@_edit
def remove_service(doc: tomlkit.TOMLDocument, role: str, name: str) -> None:
    """Remove ``[ROLE.services.NAME]`` with the comment lines above its header; the lines
    that introduced the next table stay in front of it."""
    services_table, service = _locate(doc, role, name)
    if isinstance(service, Table):
        container, end = _before(doc, role, name)
        above = _gap(container, end)
        _take(container, above)
        carried = _own_gap(service)
        _insert_keyless(container, above[0] if above else end, carried)
    services_table.remove(name)
    if not any(t is services_table for t, _, _ in _entries(doc, role)):
        role_table = _holder(doc, role, services_table)
        leftover = _take(services_table.value, list(range(len(services_table.value.body))))
        role_table.remove("services")
        for item in leftover:
            if not isinstance(item, Null):
                role_table.value.append(None, item)


@_edit
def rename_service(doc: tomlkit.TOMLDocument, role: str, old: str, new: str) -> None:
    """Rename a service in place: same position, keys and comments."""
    if old == new:
        return
    if new in services(doc, role):
        raise ValueError(f"[{role}] already has a service named {new!r}")
    services_table, service = _locate(doc, role, old)
    # tomlkit's own key replacement adds a blank line after a table ending in a comment;
    # swapping the key in the body is enough for rendering, and @_edit parses the result.
    container = services_table.value
    index = container._map.pop(SingleKey(old))
    container.body[index] = (SingleKey(new), service)
    if isinstance(service, Table):
        service.name = new
        service.invalidate_display_name()


# --------------------------------------------------------------------------- transport


def _sub_table(parent: Table, key: str) -> Table:
    existing = parent.get(key)
    if isinstance(existing, Table):
        return existing
    table = tomlkit.table()
    _append_table(parent, key, table)
    return table


@_edit
def set_transport(
    doc: tomlkit.TOMLDocument,
    role: str,
    transport_type: str,
    sections: Mapping[str, Mapping[str, Value]] | None = None,
) -> None:
    """Set ``[ROLE.transport] type`` and keys of its sub-tables (``sections`` maps "noise" or
    "tls" to fields; a value None or "" removes the key). A plain ``tcp`` transport with
    nothing else to say adds no table."""
    role_table = _role(doc, role)
    if role_table is None:
        raise ValueError(f"the config has no [{role}] table")
    sections = sections or {}
    wanted = any(v not in (None, "") for fields in sections.values() for v in fields.values())
    existing = _transport(doc, role)
    if existing is None:
        if transport_type == "tcp" and not wanted:
            return
        existing = tomlkit.table()
        _append_table(role_table, "transport", existing)
    _set_keys(existing, {"type": transport_type})
    for section, fields in sections.items():
        if section not in TRANSPORT_KEYS:
            raise ValueError(f"no transport section {section!r}")
        present = existing.get(section)
        if not isinstance(present, Table) and all(v in (None, "") for v in fields.values()):
            continue
        _set_keys(_sub_table(existing, section), fields)
