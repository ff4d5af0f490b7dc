"""Config file events on Linux: the names that change in a watched directory, read on the event
loop (``watcher.directory_changes``), and a config watcher on file events that loads neither
watchfiles nor anyio (they cost about 2.5 MiB of an idle daemon). Real directories and files
under tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import run

from ratui.engine.watcher import EVERYTHING, directory_changes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")


def changes(directory: Path) -> AsyncIterator[set[str]]:
    return directory_changes((str(directory),), threading.Event(), 0.05)


async def names_until(events: AsyncIterator[set[str]], wanted: str) -> None:
    """Read batches until one names ``wanted`` (an event for it must come within 3 s)."""
    async with asyncio.timeout(3):
        async for batch in events:
            if wanted in batch:
                return


@pytest.mark.timeout(20)
def test_each_kind_of_save_names_the_file(tmp_path: Path) -> None:
    async def main() -> None:
        events = changes(tmp_path)
        async with contextlib.aclosing(events):
            first = asyncio.ensure_future(names_until(events, "config.toml"))
            await asyncio.sleep(0.1)  # the watch is set once the generator first runs
            (tmp_path / "config.toml").write_text("a = 1\n")  # created
            await first
            with open(tmp_path / "config.toml", "a") as f:  # written in place
                f.write("b = 2\n")
            await names_until(events, "config.toml")
            (tmp_path / "new.tmp").write_text("c = 3\n")
            await names_until(events, "new.tmp")
            os.replace(tmp_path / "new.tmp", tmp_path / "config.toml")  # renamed over
            await names_until(events, "config.toml")
            (tmp_path / "config.toml").unlink()  # deleted
            await names_until(events, "config.toml")

    run(main())


@pytest.mark.timeout(20)
def test_a_removed_directory_means_anything_may_have_changed(tmp_path: Path) -> None:
    watched = tmp_path / "conf.d"
    watched.mkdir()

    async def main() -> None:
        events = changes(watched)
        async with contextlib.aclosing(events):
            seen = asyncio.ensure_future(names_until(events, EVERYTHING))
            await asyncio.sleep(0.1)
            watched.rmdir()
            await seen

    run(main())


@pytest.mark.timeout(20)
def test_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    async def main() -> None:
        events = changes(tmp_path / "nowhere")
        async with contextlib.aclosing(events):
            with pytest.raises(OSError):
                await anext(events)

    run(main())


@pytest.mark.timeout(30)
def test_watching_on_events_loads_neither_watchfiles_nor_anyio(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("version = 1\n")
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from ratui.engine.watcher import ConfigWatcher, WatchMode

        async def main():
            seen = asyncio.Queue()

            async def on_change(data):
                await seen.put(data)

            watcher = ConfigWatcher({str(path)!r}, on_change, mode=WatchMode.EVENTS,
                                    poll_interval=60.0)
            await watcher.start()
            try:
                assert await asyncio.wait_for(seen.get(), 5) == b"version = 1\\n"
                await asyncio.sleep(0.2)
                with open({str(path)!r}, "w") as f:
                    f.write("version = 2\\n")
                assert await asyncio.wait_for(seen.get(), 5) == b"version = 2\\n"
            finally:
                await watcher.stop()
            print(sorted(m for m in ("watchfiles", "anyio") if m in sys.modules))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
