"""The forms half of the config editor: the services of each role and their transport, on the
left; the fields of the chosen one on the right.

The forms edit a tomlkit document through :mod:`ratui.tomledit`, so whatever they do not
show (comments, other keys, their order) stays as written. A form's fields go into the
document when another entry is chosen, when the editor saves or switches to the raw TOML
(:meth:`ConfigForms.commit`).
"""

from __future__ import annotations

from typing import Any

import tomlkit
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Label, OptionList, Select
from textual.widgets.option_list import Option
from tomlkit.exceptions import TOMLKitError

from .. import tomledit
from ..engine.config import ConfigError
from ..setup.pairing import SERVICE_TYPES
from .wizard import Field, FieldError

TRANSPORT_TYPES = ("tcp", "tls", "noise", "websocket")
NODELAY = (("default", None), ("on", True), ("off", False))
ADDR_HINT = {
    "server": ("bind_addr: where visitors connect", "0.0.0.0:8080"),
    "client": ("local_addr: the service to expose", "127.0.0.1:8080"),
}
#: Transport fields: (section, key, label); shown for the transport types in ``SHOWN_FOR``.
TRANSPORT_FIELDS = (
    ("noise", "pattern", "noise pattern (empty: Noise_NK_25519_ChaChaPoly_BLAKE2s)"),
    ("noise", "local_private_key", "noise local_private_key"),
    ("noise", "remote_public_key", "noise remote_public_key"),
    ("tls", "hostname", "tls hostname"),
    ("tls", "trusted_root", "tls trusted_root (CA file)"),
    ("tls", "pkcs12", "tls pkcs12 (identity file)"),
    ("tls", "pkcs12_password", "tls pkcs12_password"),
)
SHOWN_FOR = {"noise": {"noise"}, "tls": {"tls", "websocket"}, "websocket": {"websocket"}}
#: ``[ROLE.transport.websocket] tls``: whether the websocket runs over TLS.
WEBSOCKET_TLS = (("not set", None), ("on (wss)", True), ("off (ws)", False))


def entry_id(kind: str, role: str, name: str = "") -> str:
    """Option ids: ``service:ROLE:NAME``, ``add:ROLE:``, ``transport:ROLE:``."""
    return f"{kind}:{role}:{name}"


def split_entry(option_id: str) -> tuple[str, str, str]:
    kind, role, name = option_id.split(":", 2)
    return kind, role, name


class Choice(Vertical):
    """A labelled drop-down with its error under it."""

    DEFAULT_CSS = """
    Choice { height: auto; margin-bottom: 1; }
    Choice > Label { color: $text-muted; }
    """

    def __init__(self, label: str, options: list[tuple[str, Any]], *, id: str) -> None:
        super().__init__(id=id)
        self.label = label
        self.select: Select[Any] = Select(
            options, allow_blank=False, compact=True, id=f"{id}-select"
        )
        self.error = FieldError(id=f"{id}-error")

    def compose(self) -> ComposeResult:
        yield Label(self.label)
        yield self.select
        yield self.error


class ConfigForms(Horizontal):
    """The forms; :attr:`doc` is the document they edit."""

    DEFAULT_CSS = """
    ConfigForms { height: 1fr; }
    ConfigForms > OptionList { width: 28; height: 100%; border: round $foreground 30%; }
    ConfigForms > OptionList:focus { border: round $primary; }
    ConfigForms > VerticalScroll { height: 100%; padding: 0 1; }
    ConfigForms #service-form, ConfigForms #transport-form { height: auto; }
    ConfigForms .-hidden { display: none; }
    ConfigForms #form-title { text-style: bold; color: $text-primary; margin-bottom: 1; }
    ConfigForms #remove { margin-bottom: 1; }
    """

    def __init__(self, doc: tomlkit.TOMLDocument, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.doc = doc
        #: The entry whose fields the form shows (an option id), None before the first.
        self.current: str | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield OptionList(id="entries")
        with VerticalScroll(id="form"):
            yield Label(id="form-title", markup=False)
            with Vertical(id="service-form"):
                yield Field("name", id="name")
                yield Choice("type", [(t, t) for t in SERVICE_TYPES], id="type")
                yield Field("address", id="addr")
                yield Field("token (empty: the default token)", id="token", password=True)
                yield Choice("nodelay", list(NODELAY), id="nodelay")
                yield Button("Remove this service", id="remove", variant="error", compact=True)
            with Vertical(id="transport-form"):
                yield Choice("transport type", [(t, t) for t in TRANSPORT_TYPES], id="tr-type")
                yield Choice("websocket tls", list(WEBSOCKET_TLS), id="tr-websocket-tls")
                for section, key, label in TRANSPORT_FIELDS:
                    yield Field(
                        label,
                        id=f"tr-{section}-{key}",
                        password=key in ("local_private_key", "pkcs12_password"),
                    )

    def on_mount(self) -> None:
        # Tab goes from the list straight to the first field, not to the scrolling pane.
        self.query_one("#form", VerticalScroll).can_focus = False
        self.refresh_entries()

    def refresh_entries(self, select: str | None = None) -> None:
        """List the document's roles, services and transports; show ``select`` (else the
        current entry, else the first service)."""
        entries = self.query_one("#entries", OptionList)
        entries.clear_options()
        options: list[Option] = []
        for role in tomledit.ROLES:
            if role not in self.doc:
                continue
            options.append(Option(Text(f"{role} transport"), id=entry_id("transport", role)))
            for name in tomledit.services(self.doc, role):
                options.append(
                    Option(Text(f"  {role} · {name}"), id=entry_id("service", role, name))
                )
            options.append(Option(Text(f"  + add a {role} service"), id=entry_id("add", role)))
        entries.add_options(options)
        ids = [o.id for o in options]
        wanted = select or self.current
        if wanted not in ids:
            services = [i for i in ids if i and i.startswith("service:")]
            wanted = services[0] if services else (ids[0] if ids else None)
        self.current = None
        if wanted is not None:
            entries.highlighted = ids.index(wanted)
            self._show(wanted)

    # ------------------------------------------------------------------ showing an entry

    def _show(self, option_id: str) -> None:
        self.current = option_id
        kind, role, name = split_entry(option_id)
        self._clear_errors()
        self.query_one("#service-form").set_class(kind == "transport", "-hidden")
        self.query_one("#transport-form").set_class(kind != "transport", "-hidden")
        title = self.query_one("#form-title", Label)
        if kind == "transport":
            title.update(f"[{role}.transport]")
            self._fill_transport(role)
            return
        title.update(f"[{role}.services.{name}]" if name else f"A new {role} service")
        fields = tomledit.service_fields(self.doc, role, name) if name else {}
        label, placeholder = ADDR_HINT[role]
        addr = self.query_one("#addr", Field)
        addr.query_one(Label).update(label)
        addr.input.placeholder = placeholder
        self.query_one("#name", Field).value = name
        self.query_one("#type-select", Select).value = fields.get("type", "tcp")
        addr.value = str(fields.get(tomledit.ADDR_KEY[role], ""))
        self.query_one("#token", Field).value = str(fields.get("token", ""))
        self.query_one("#nodelay-select", Select).value = fields.get("nodelay")
        self.query_one("#remove", Button).display = bool(name)

    def _fill_transport(self, role: str) -> None:
        fields = tomledit.transport_fields(self.doc, role)
        kind = str(fields.get("type", "tcp"))
        self.query_one("#tr-type-select", Select).value = kind
        websocket_tls = fields.get("websocket", {}).get("tls")
        self.query_one("#tr-websocket-tls-select", Select).value = websocket_tls
        for section, key, _ in TRANSPORT_FIELDS:
            values = fields.get(section, {})
            self.query_one(f"#tr-{section}-{key}", Field).value = str(values.get(key, ""))
        self._show_transport_fields(kind)

    def _show_transport_fields(self, kind: str) -> None:
        self.query_one("#tr-websocket-tls").set_class(kind != "websocket", "-hidden")
        for section, key, _ in TRANSPORT_FIELDS:
            shown = kind in SHOWN_FOR[section]
            self.query_one(f"#tr-{section}-{key}").set_class(not shown, "-hidden")

    @on(Select.Changed, "#tr-type-select")
    def _transport_type_changed(self, event: Select.Changed) -> None:
        self._show_transport_fields(str(event.value))

    @on(OptionList.OptionHighlighted, "#entries")
    def _entry_chosen(self, event: OptionList.OptionHighlighted) -> None:
        option_id = event.option.id
        if option_id is None or option_id == self.current:
            return
        if not self.commit():
            # Stay on the entry with the problem, as typed.
            entries = self.query_one("#entries", OptionList)
            entries.highlighted = entries.get_option_index(self.current or "")
            return
        self.refresh_entries(select=option_id)

    @on(Button.Pressed, "#remove")
    def _remove(self, event: Button.Pressed) -> None:
        event.stop()
        assert self.current is not None
        _, role, name = split_entry(self.current)
        try:
            self.doc = tomledit.remove_service(self.doc, role, name)
        except (ValueError, KeyError, TOMLKitError) as exc:
            self._refuse("#name", f"cannot remove {name}: {_reason(exc)}")
            return
        self.current = None
        self.refresh_entries()
        self.notify(f"Removed {role} service {name} (saved with ctrl+s)", timeout=3)

    # ------------------------------------------------------------------ into the document

    def commit(self) -> bool:
        """Write the shown form into :attr:`doc`; False (with the problem shown under its
        field) when it cannot be, e.g. a service without a name."""
        if self.current is None:
            return True
        kind, role, name = split_entry(self.current)
        try:
            return self._commit(kind, role, name)
        except (ValueError, KeyError, TOMLKitError) as exc:  # a layout the edits cannot handle
            return self._refuse("#tr-type" if kind == "transport" else "#name", _reason(exc))

    def _commit(self, kind: str, role: str, name: str) -> bool:
        if kind == "transport":
            self._commit_transport(role)
            return True
        new_name = self.query_one("#name", Field).value
        fields = self._service_fields(role, name)
        if kind == "add" and not new_name and not any(fields.values()):
            return True  # an untouched new-service form adds nothing
        if not new_name:
            return self.query_one("#name", Field).check("a service needs a name")
        if new_name != name and new_name in tomledit.services(self.doc, role):
            return self.query_one("#name", Field).check(f"[{role}] already has {new_name}")
        if kind == "add":
            self.doc = tomledit.add_service(self.doc, role, new_name, fields)
        else:
            self.doc = tomledit.set_service(self.doc, role, name, fields)
            self.doc = tomledit.rename_service(self.doc, role, name, new_name)
        self.current = entry_id("service", role, new_name)
        return True

    def _service_fields(self, role: str, name: str) -> dict[str, tomledit.Value]:
        existing = tomledit.service_fields(self.doc, role, name) if name else {}
        kind = str(self.query_one("#type-select", Select).value)
        return {
            # "tcp" is the default: written only where the file already says a type.
            "type": kind if kind != "tcp" or "type" in existing else None,
            tomledit.ADDR_KEY[role]: self.query_one("#addr", Field).value,
            "token": self.query_one("#token", Field).value,
            "nodelay": self.query_one("#nodelay-select", Select).value,
        }

    def _commit_transport(self, role: str) -> None:
        kind = str(self.query_one("#tr-type-select", Select).value)
        sections: dict[str, dict[str, tomledit.Value]] = {}
        for section, key, _ in TRANSPORT_FIELDS:
            value = self.query_one(f"#tr-{section}-{key}", Field).value
            sections.setdefault(section, {})[key] = value
        sections["websocket"] = {"tls": self.query_one("#tr-websocket-tls-select", Select).value}
        self.doc = tomledit.set_transport(self.doc, role, kind, sections)

    # ------------------------------------------------------------------ errors in place

    def _refuse(self, field: str, problem: str) -> bool:
        """Show ``problem`` under ``field`` (a form field's id); always False."""
        self.query_one(field).query_one(FieldError).show(problem)
        return False

    def _clear_errors(self) -> None:
        for error in self.query(FieldError):
            error.show(None)

    def show_error(self, error: ConfigError) -> bool:
        """Show ``error`` under the field it is about, choosing that entry; False when no
        form field shows the key it names (the caller shows it elsewhere)."""
        parts = error.table.split(".")
        if len(parts) < 2 or parts[0] not in tomledit.ROLES:
            return False
        role = parts[0]
        if parts[1] == "services" and len(parts) == 3:
            target = entry_id("service", role, parts[2].strip('"'))
            field = {"type": "#type", "token": "#token", "nodelay": "#nodelay"}.get(error.key)
            if error.key == tomledit.ADDR_KEY[role]:
                field = "#addr"
        elif parts[1] == "transport":
            target = entry_id("transport", role)
            if len(parts) == 2:
                field = "#tr-type" if error.key == "type" else None
            else:
                field = f"#tr-{parts[2]}-{error.key}"
        else:
            return False
        if field is None or not self.query(field):
            return False
        self.refresh_entries(select=target)
        widget = self.query_one(field)
        errors = widget.query(FieldError)
        if not errors:
            return False
        errors.first().show(error.problem)
        focus = widget.query("Input, Select").first()
        focus.focus()
        return True


def _reason(exc: Exception) -> str:
    """The message of ``exc`` (a KeyError's str() adds quotes)."""
    return str(exc.args[0]) if exc.args else str(exc)
