"""write_secret_file and the config location, on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ratui.setup.files import (
    CONFIG_DIR_ENV,
    ExistingFileError,
    config_dir,
    default_config_path,
    find_config,
    write_secret_file,
)
from ratui.setup.tokens import new_token


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "ratui.toml"
    assert write_secret_file(target, "a = 1\n") is None
    assert target.read_text() == "a = 1\n"
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["ratui.toml"]


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "ratui.toml"
    target.write_text("old\n")
    with pytest.raises(ExistingFileError) as info:
        write_secret_file(target, "new\n")
    assert str(info.value) == (
        f"{target} already exists: use --force to replace it (the current file is kept as "
        "ratui.toml.bak)"
    )
    assert isinstance(info.value, FileExistsError)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratui.toml"]


def test_overwrite_keeps_a_0600_backup(tmp_path: Path) -> None:
    target = tmp_path / "ratui.toml"
    target.write_text("old\n")
    target.chmod(0o644)
    backup = write_secret_file(target, "new\n", overwrite=True)
    assert backup == tmp_path / "ratui.toml.bak"
    assert backup.read_text() == "old\n" and mode(backup) == 0o600
    assert target.read_text() == "new\n" and mode(target) == 0o600
    # A second replacement keeps only the version just before it.
    write_secret_file(target, "newer\n", overwrite=True)
    assert backup.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratui.toml", "ratui.toml.bak"]


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "ratui.toml"
    # A lone surrogate cannot be encoded: nothing is touched, not even the backup.
    with pytest.raises(UnicodeEncodeError):
        write_secret_file(target, "token = 'x'\n\udc80")
    assert list(tmp_path.iterdir()) == []
    target.write_text("old\n")
    backup = write_secret_file(target, "new\n", overwrite=True)
    assert backup is not None
    with pytest.raises(UnicodeEncodeError):
        write_secret_file(target, "\udc80", overwrite=True)
    assert target.read_text() == "new\n" and backup.read_text() == "old\n"


def test_a_write_failing_on_disk_leaves_the_file_and_its_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ratui.toml"
    target.write_text("old\n")
    backup = write_secret_file(target, "new\n", overwrite=True)
    assert backup is not None

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_secret_file(target, "newer\n", overwrite=True)
    assert target.read_text() == "new\n" and backup.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratui.toml", "ratui.toml.bak"]


@pytest.mark.parametrize(
    ("before", "after"), [(0o600, 0o600), (0o400, 0o400), (0o640, 0o600), (0o644, 0o600)]
)
def test_a_replaced_file_keeps_an_owner_only_mode(tmp_path: Path, before: int, after: int) -> None:
    target = tmp_path / "ratui.toml"
    target.write_text("old\n")
    target.chmod(before)
    write_secret_file(target, "new\n", overwrite=True)
    assert mode(target) == after and mode(tmp_path / "ratui.toml.bak") == 0o600


def test_a_symlinked_config_is_written_through_to_its_target(tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "ratui.toml"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "ratui.toml"
    link.symlink_to(target)
    assert write_secret_file(link, "new\n", overwrite=True) == target.with_name("ratui.toml.bak")
    assert link.is_symlink() and link.read_text() == "new\n"
    assert target.with_name("ratui.toml.bak").read_text() == "old\n"


def test_write_into_a_missing_place_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        write_secret_file(blocker / "ratui.toml", "x")


def test_config_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    assert config_dir() == tmp_path
    assert default_config_path() == tmp_path / "ratui.toml"
    assert find_config() is None
    write_secret_file(default_config_path(), "x = 1\n")
    assert find_config() == tmp_path / "ratui.toml"
    monkeypatch.delenv(CONFIG_DIR_ENV)
    assert config_dir().name == "ratui"


def test_tokens_are_long_distinct_and_url_safe() -> None:
    seen = {new_token() for _ in range(100)}
    assert len(seen) == 100
    assert all(len(t) == 43 and t.replace("-", "").replace("_", "").isalnum() for t in seen)
