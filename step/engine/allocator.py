"""How the C library's allocator treats freed memory in a CPU run (``trainer.cpu_allocator``).

A training step on the CPU allocates and frees the same few hundred activation buffers every step.
With glibc's defaults, buffers above the mmap threshold (at most 32 MB) get fresh pages from the
kernel on every allocation and go back on every free, and the top of the heap is trimmed: every
step then pays a page fault per 4 KiB touched (on this project's 2-core VM, a Spikformer-4-384
step at batch 8 took about 200,000 faults and a tenth of its time in the kernel). ``keep`` tells
glibc to serve every allocation from the heap and never give freed memory back, so from the second
step on the buffers are reused without faults, which is what the CUDA caching allocator does on
GPUs. The resident set then stays at the run's peak instead of shrinking between steps.

``system`` restores glibc's defaults. Other C libraries (musl, macOS) are left alone: the call
reports that it did nothing. Nothing here changes a computed value.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from step.errors import ConfigError

MODES = ("keep", "system")
# glibc <malloc.h>
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
#: glibc's documented defaults (the mmap threshold starts at 128 KiB and is dynamic until set)
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_TOP_PAD: 0, _M_MMAP_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_KEEP = {_M_TRIM_THRESHOLD: 2**31 - 1, _M_MMAP_MAX: 0}

_STATE = {"mode": "system"}


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def configure_cpu_allocator(mode: str) -> str:
    """Apply ``mode`` (``keep`` or ``system``) to this process; returns what is in effect, e.g.
    ``"keep"``, ``"system"`` or ``"system (not glibc: left as it is)"``."""
    if mode not in MODES:
        raise ConfigError(f"trainer.cpu_allocator={mode!r} is not one of {', '.join(MODES)}.")
    if mode == _STATE["mode"]:
        return mode
    libc = _libc()
    if libc is None:
        return f"{_STATE['mode']} (not glibc: left as it is)"
    settings = _KEEP if mode == "keep" else _DEFAULTS
    for param, value in settings.items():
        if libc.mallopt(param, value) != 1:
            return f"{_STATE['mode']} (mallopt({param}, {value}) was refused)"
    _STATE["mode"] = mode
    return mode


def current() -> str:
    return _STATE["mode"]
