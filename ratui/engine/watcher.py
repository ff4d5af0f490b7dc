"""Notice every change to the config file, however it was saved, and hand over its new bytes.

rathole watches the file's directory for "modify" events on the file's name (PROTOCOL.md §6.5)
and so misses saves that replace the file, and every change on file systems that deliver no
events (Docker Desktop bind mounts, NFS, SMB). :class:`ConfigWatcher` combines two sources:

* **file events** (inotify read on the event loop on Linux, watchfiles elsewhere) on the
  file's directory, and on the directory of the file it resolves to when it is a symlink, not
  recursively. Any event on the file's name, on the resolved name or on a Kubernetes-style
  ``..data`` entry counts, so in-place writes, ``cp``, ``mv``, editors'
  write-to-temp-then-rename, symlink swaps and ``..data`` swaps are all seen.
  The watched directories are worked out again after each change, so a swapped symlink is
  followed.
* **polling**: the file is read every ``poll_interval`` seconds (a few KB, in a worker thread so
  a slow network file system never blocks the tunnel). In ``auto`` mode this runs beside the
  events as a safety net; in ``poll`` mode it is the only source. If file events cannot be had
  at all (no inotify, watch limit reached), ``auto`` carries on with polling alone.

A burst of events is debounced: the file is read once nothing happened for ``debounce`` seconds
(but at most ``max_delay`` after the first event), then read again ``debounce`` later; only two
identical reads count, so a half-written file is never handed over. The callback gets the bytes
only when they differ from the last bytes it was given (or ``None`` when the file cannot be
read), so a reload happens once per real change. The first check runs at :meth:`start`, which
catches a change made between loading the config and starting to watch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum

log = logging.getLogger("ratui.watcher")

DEFAULT_DEBOUNCE = 0.1  # seconds of quiet before a change is read
DEFAULT_MAX_DELAY = 1.0  # seconds from the first event of a burst to the first read, at most
DEFAULT_POLL_INTERVAL = 1.0  # seconds between two polls of the file
EVENTS_RETRY_DELAY = 5.0  # seconds before file events are tried again after a failure

#: The callback: the file's new bytes, or None when it cannot be read (missing, no permission).
OnChange = Callable[[bytes | None], Awaitable[object]]


class WatchMode(StrEnum):
    AUTO = "auto"  # file events, plus polling as a safety net
    EVENTS = "events"  # file events only
    POLL = "poll"  # polling only
    OFF = "off"  # nothing is watched


class ConfigWatcher:
    """Calls ``on_change`` once per real change of the file at ``path`` (see module doc)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: OnChange,
        *,
        mode: WatchMode | str = WatchMode.AUTO,
        debounce: float = DEFAULT_DEBOUNCE,
        max_delay: float = DEFAULT_MAX_DELAY,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.path = os.path.abspath(os.fsdecode(path))
        self.on_change = on_change
        self.mode = WatchMode(mode)
        self.debounce = debounce
        self.max_delay = max_delay
        self.poll_interval = poll_interval
        self._last: bytes | None = None  # digest of what on_change was last given
        self._dirty = asyncio.Event()
        self._first_trigger: float | None = None
        self._stop_events = threading.Event()  # read by watchfiles' worker thread
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.mode is WatchMode.OFF or self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._debouncer(), name="config-debounce"))
        if self.mode in (WatchMode.AUTO, WatchMode.POLL):
            self._tasks.append(loop.create_task(self._poller(), name="config-poll"))
        if self.mode in (WatchMode.AUTO, WatchMode.EVENTS):
            self._tasks.append(loop.create_task(self._events(), name="config-events"))
        self._trigger()
        log.debug("Watching %s (mode %s)", self.path, self.mode)

    async def stop(self) -> None:
        self._stop_events.set()  # lets watchfiles' thread return within one step (50 ms)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2.0)
        self._tasks.clear()

    async def __aenter__(self) -> ConfigWatcher:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # reading ------------------------------------------------------------------------------
    def _read(self) -> tuple[bytes, bytes | None]:
        """(a digest that identifies the content or the error, the bytes or None)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            return f"error:{exc.errno}".encode(), None
        return hashlib.sha256(data).digest(), data

    async def _read_async(self) -> tuple[bytes, bytes | None]:
        return await asyncio.to_thread(self._read)

    # triggering and debouncing ------------------------------------------------------------
    def _trigger(self) -> None:
        if self._first_trigger is None:
            self._first_trigger = time.monotonic()
        self._dirty.set()

    async def _debouncer(self) -> None:
        while True:
            await self._dirty.wait()
            # Wait for a quiet period, but never longer than max_delay after the first event.
            while True:
                self._dirty.clear()
                assert self._first_trigger is not None
                left = self._first_trigger + self.max_delay - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._dirty.wait(), min(self.debounce, left))
                except TimeoutError:
                    break
            self._first_trigger = None
            try:
                await self._check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the callback failed: keep watching
                log.exception("Handling a change of %s failed", self.path)

    async def _check(self) -> None:
        digest, data = await self._read_async()
        if digest == self._last:
            return
        await asyncio.sleep(self.debounce)
        again, _ = await self._read_async()
        if again != digest:  # still being written: look again once it settles
            self._trigger()
            return
        self._last = digest
        await self.on_change(data)

    # sources ------------------------------------------------------------------------------
    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            digest, _ = await self._read_async()
            if digest != self._last:
                self._trigger()

    def _watched(self) -> tuple[tuple[str, ...], frozenset[str]]:
        """The directories to watch and the entry names in them that matter."""
        real = os.path.realpath(self.path)
        dirs = sorted({os.path.dirname(self.path), os.path.dirname(real)})
        names = frozenset({os.path.basename(self.path), os.path.basename(real)})
        return tuple(d for d in dirs if os.path.isdir(d)), names

    async def _events(self) -> None:
        warned = False
        while not self._stop_events.is_set():
            dirs, names = self._watched()
            if not dirs:
                await asyncio.sleep(self.poll_interval)
                continue
            changes = directory_changes(dirs, self._stop_events, self.max_delay)
            try:
                async with contextlib.aclosing(changes):
                    async for batch in changes:
                        if any(n in names or n.startswith("..") or n == EVERYTHING for n in batch):
                            self._trigger()
                            if self._watched() != (dirs, names):
                                break  # a symlink was swapped: watch where it points now
                    else:
                        return  # stopped
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no inotify, watch limit reached, directory gone...
                if not warned:
                    self._events_failed(str(exc) or type(exc).__name__)
                    warned = True
                else:
                    log.debug("File events for %s still unavailable: %s", self.path, exc)
                await asyncio.sleep(EVENTS_RETRY_DELAY)

    def _events_failed(self, why: str) -> None:
        if self.mode is WatchMode.AUTO:
            log.warning(
                "No file events for %s (%s); polling it every %g s instead",
                self.path,
                why,
                self.poll_interval,
            )
        else:
            log.error(
                "No file events for %s (%s); trying again every %g s",
                self.path,
                why,
                EVENTS_RETRY_DELAY,
            )


#: Stands for "any name may have changed": the kernel's event queue overflowed, or a watched
#: directory itself went away.
EVERYTHING = "*"


def directory_changes(
    dirs: tuple[str, ...], stop: threading.Event, max_delay: float
) -> AsyncIterator[set[str]]:
    """Batches of names that changed in ``dirs`` (:data:`EVERYTHING`: maybe any of them): from
    inotify read on the event loop where the system has it (Linux: asyncinotify, no thread and
    about 2.5 MiB less than watchfiles with anyio), else from watchfiles' thread."""
    if sys.platform == "linux":
        return _inotify_changes(dirs)
    return _watchfiles_changes(dirs, stop, max_delay)


async def _inotify_changes(dirs: tuple[str, ...]) -> AsyncIterator[set[str]]:
    from asyncinotify import Inotify, Mask

    whole = Mask.Q_OVERFLOW | Mask.IGNORED | Mask.DELETE_SELF | Mask.MOVE_SELF
    watched = (
        Mask.MODIFY
        | Mask.ATTRIB
        | Mask.CLOSE_WRITE
        | Mask.MOVED_FROM
        | Mask.MOVED_TO
        | Mask.CREATE
        | Mask.DELETE
        | Mask.DELETE_SELF
        | Mask.MOVE_SELF
    )
    with Inotify() as inotify:
        for directory in dirs:
            inotify.add_watch(directory, watched)
        async for event in inotify:
            if event.mask & whole or event.name is None:
                yield {EVERYTHING}
            else:
                yield {str(event.name)}


async def _watchfiles_changes(
    dirs: tuple[str, ...], stop: threading.Event, max_delay: float
) -> AsyncIterator[set[str]]:
    try:
        import watchfiles
    except ImportError:  # pragma: no cover - a declared dependency
        raise OSError("the watchfiles package is not installed") from None
    changes = watchfiles.awatch(
        *dirs,
        recursive=False,
        stop_event=stop,
        force_polling=False,
        debounce=int(max_delay * 1000),
        step=50,
    )
    async with contextlib.aclosing(changes):
        async for batch in changes:
            yield {os.path.basename(path) for _, path in batch}
