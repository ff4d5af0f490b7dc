"""Where ratui keeps its config, and writing files that hold secrets.

A config holds tokens (and maybe a private key), so it is written the way a password file
is: created with mode 0600 from the first byte, in full into a temporary file beside the
target, flushed to disk and then renamed over the target, so that a crash or a full disk
leaves either the old file or the new one, never half of one. :func:`write_secret_file` is
the one writer of configs: the wizards, ``ratui init``, the editor and the daemon's save all
use it, so a config ends up the same whichever of them wrote it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import platformdirs

#: Overrides the config directory (the tests point it at a temporary directory).
CONFIG_DIR_ENV = "RATUI_CONFIG_DIR"
CONFIG_NAME = "ratui.toml"
SECRET_MODE = 0o600
DIR_MODE = 0o700


class ExistingFileError(FileExistsError):
    """The target exists and overwriting it was not allowed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"{path} already exists: use --force to replace it (the current file is kept "
            f"as {backup_path(path).name})"
        )


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def write_secret_file(path: Path, text: str, *, overwrite: bool = False) -> Path | None:
    """Write ``text`` (UTF-8) to ``path`` atomically; the policy for every config write:

    * a file that is replaced is kept as ``<name>.bak`` (mode 0600), the version just before;
    * a new file is 0600, in a new directory 0700;
    * a replaced file keeps its mode when only its owner may use it (0600, 0400, ...); one
      that others could read or write becomes 0600, since it holds tokens;
    * a symlinked config is written through to the file it points to (the link stays a link,
      and the ``.bak`` lies beside that file).

    Returns the backup, or None when there was no file to replace. Raises
    :class:`ExistingFileError` when ``path`` exists and ``overwrite`` is False, and
    :class:`OSError` (or the encoding's error) when writing fails, in which case the file
    and its previous backup are untouched and no temporary file is left behind.
    """
    path = Path(path)
    exists = path.exists() or path.is_symlink()
    if exists and not overwrite:
        raise ExistingFileError(path)
    data = text.encode("utf-8")  # fails before anything is touched
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        old_mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:  # new, or a dangling link's target
        old_mode = SECRET_MODE
    backup = None
    if path.exists():
        backup = backup_path(path)
        _atomic_write(backup, path.read_bytes(), SECRET_MODE)
    _atomic_write(path, data, SECRET_MODE if old_mode & 0o077 else old_mode)
    return backup


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file with O_EXCL and mode 0600 (SECRET_MODE).
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            if mode != SECRET_MODE:
                os.fchmod(handle.fileno(), mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def config_dir() -> Path:
    """``$RATUI_CONFIG_DIR``, else the platform's per-user config directory for ratui."""
    override = os.environ.get(CONFIG_DIR_ENV, "").strip()
    return Path(override) if override else Path(platformdirs.user_config_dir("ratui"))


def default_config_path() -> Path:
    return config_dir() / CONFIG_NAME


def find_config() -> Path | None:
    """The default config, if it exists."""
    path = default_config_path()
    return path if path.is_file() else None
