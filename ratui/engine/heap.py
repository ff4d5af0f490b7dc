"""glibc's allocator, tuned for the relay's buffers.

Every read on the callback path is a fresh bytes object of up to 256 KiB, and a layered
transport makes one more of each size per direction (plaintext, ciphertext). With glibc's
adaptive defaults the heap was often trimmed right after such buffers were freed, so the next
ones came back as new pages: some 200,000 page faults a second per process and a third more
CPU per byte under a Noise bulk transfer, on some runs and not others (seen in
/proc/PID/stat's minflt and in py-spy on the buffer allocations). Fixed limits end that:
buffers up to 1 MiB stay on the heap, and up to 8 MiB of freed heap is kept for the next
ones. Idle memory is unchanged (nothing is reserved up front). The same limits can be set
with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_, but only before the process starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 8 << 20


def keep_heap() -> None:
    """Set the limits above; does nothing where there is no glibc."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
