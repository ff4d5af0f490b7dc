"""``ratui.engine.heap``: with glibc's limits set, buffers of the relay's sizes are reused from
the heap instead of coming back as fresh pages on every read (measured as minor page faults of
a real subprocess, with and without the setting)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")

SCRIPT = textwrap.dedent(
    """
    import resource, sys
    if sys.argv[1] == "tuned":
        from ratui.engine.heap import keep_heap
        keep_heap()
    kept = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(2000):
        data = bytes(256 * 1024)  # a read's worth, as uvloop hands it over
        frame = bytearray(300 * 1024)  # and a buffer built from it
        frame[-1] = 1
        del data, frame
        if i % 3 == 0:
            kept.append(bytes(1000))  # something small outlives each round, as in a relay
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.timeout(120)
def test_relay_sized_buffers_come_from_the_heap_once_tuned() -> None:
    default, tuned = page_faults("default"), page_faults("tuned")
    print(f"\nminor page faults for 2000 rounds: default {default}, tuned {tuned}")
    assert tuned < 2000 < default
