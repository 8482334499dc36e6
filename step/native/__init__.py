"""CPU kernels in C, compiled on first use and called through ctypes.

* ``lif.c``: the fused multi-step IF/LIF, forward and backward (:mod:`step.neurons.kernels`).
* ``reduce.c``: the one-pass tensor statistics of the energy counters (:mod:`step.energy.reduce`).

Why C: on the CPU an eager torch loop of a multi-step neuron makes about five element-wise passes
over memory per step forward and ten backward, and the energy counters several passes per tensor;
these kernels make one. They need neither a cold ``torch.compile`` (tens of seconds, and a
recompile for every new shape) nor the torch C++ headers: plain C with OpenMP (the runtime torch
has already loaded), built in about a second each. Every kernel has a torch twin that computes the
same numbers (the tests compare them bit for bit); the twin runs where no compiler works, on
accelerators, and for dtypes or layouts the kernel does not take.

Libraries are cached under ``$STEP_CACHE_DIR`` (default ``~/.cache/step``) as
``kernels/<name>-<key>.so``, the key covering the source, the compiler, its flags and this CPU's
instruction set (``-march=native``), so a cache shared between machines never loads a library
built for another CPU. Concurrent builds are serialised by a file lock and land by atomic rename.

``STEP_KERNELS`` selects: ``auto`` (default: C where a compiler works, else torch), ``c`` (C, or a
clear error) or ``torch`` (always the torch twins). :func:`implementation` says which runs and
why, for records and logs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from step.errors import StepError

HERE = Path(__file__).resolve().parent
#: -ffp-contract=off / -fno-fast-math: every float operation rounds as written (the bit-identity
#: with torch rests on it); -fno-trapping-math only lets comparisons vectorise (no value changes)
FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math",
         "-mprefer-vector-width=512", "-fPIC", "-shared"]
CHOICES = ("auto", "c", "torch")

_STATE: dict = {"libs": {}, "why": {}, "selected": None}


def choice() -> str:
    """The selected implementation: :func:`select`'s value, else ``$STEP_KERNELS``, else auto."""
    value = _STATE["selected"] or os.environ.get("STEP_KERNELS", "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise StepError(f"STEP_KERNELS={value!r} is not one of {', '.join(CHOICES)}.")
    return value


def select(value: str | None) -> None:
    """Choose the implementation in this process (``auto``, ``c``, ``torch``; None: back to the env)."""
    if value is not None and value not in CHOICES:
        raise StepError(f"kernel choice {value!r} is not one of {', '.join(CHOICES)}.")
    _STATE["selected"] = value


def cache_dir() -> Path:
    root = os.environ.get("STEP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "step")
    return Path(root) / "kernels"


#: below this many elements a kernel runs on one thread (starting the OpenMP team costs more)
PARALLEL_MIN = 1 << 15


def threads_for(numel: int) -> int:
    """Threads a kernel call over ``numel`` elements uses: torch's intra-op count, or 1 if small."""
    import torch

    return 1 if numel < PARALLEL_MIN else torch.get_num_threads()


def dense_outer_first(x) -> bool:
    """True if tensor ``x`` fills one block of memory starting at ``x.data_ptr()`` with its first
    dimension outermost (any order inside: contiguous, channels-last steps, a transposed view), so
    that a kernel may treat it as ``shape[0]`` consecutive runs of ``numel / shape[0]`` elements."""
    if x.is_contiguous():
        return True
    if x.dim() == 0 or min(x.stride()) < 0:
        return False
    if x.shape[0] > 1 and x.stride(0) * x.shape[0] != x.numel():
        return False
    expected = 1
    for d in sorted(range(x.dim()), key=lambda d: x.stride(d)):
        if x.shape[d] == 1:
            continue
        if x.stride(d) != expected:
            return False
        expected *= x.shape[d]
    return True


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """The instruction-set flags of this CPU (what ``-march=native`` compiles for)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(cc: str, source: Path) -> str:
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    h = hashlib.sha256()
    for part in (source.read_bytes(), cc.encode(), version.encode(), " ".join(FLAGS).encode(),
                 _cpu_signature().encode(), platform.machine().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _build(cc: str, source: Path, target: Path) -> None:
    """Compile into a temporary file in the cache folder and rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        out = subprocess.run([cc, *FLAGS, "-o", tmp, str(source)], capture_output=True, text=True, timeout=300)
        if out.returncode:
            raise StepError(f"building {source.name} failed ({cc} exited {out.returncode}): "
                            f"{out.stderr.strip()[-600:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_P, _I64, _I32, _F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float

#: every kernel library: its functions' (argument types, result type)
SIGNATURES: dict[str, dict[str, tuple[list, object]]] = {
    "lif": {
        "step_lif_forward": ([_P, _P, _P, _P, _I64, _I64, _I32, _I32, _F32, _F32, _F32, _F32, _F32, _F32, _P, _I32,
                              _I32], None),
        "step_lif_backward": ([_P, _P, _P, _P, _P, _P, _P, _I64, _I64, _I32, _I32, _I32, _F32, _F32, _F32, _F32,
                               _F32, _F32, _F32, _I32, _I32], ctypes.c_int),
    },
    "reduce": {
        "step_reduce": ([_P, _I64, _I64, _P, _I32], ctypes.c_int),
        "step_reduce_planes": ([_P, _I64, _I64, _I64, _P, _P, _P, _I32], ctypes.c_int),
    },
}


def _declare(lib: ctypes.CDLL, name: str) -> ctypes.CDLL:
    for fn, (args, res) in SIGNATURES[name].items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = res
    return lib


def load(name: str) -> ctypes.CDLL | None:
    """The kernel library ``name`` (``lif``, ``reduce``), built if needed; None when it cannot be
    had (see :func:`implementation`). With ``STEP_KERNELS=c`` a failure raises instead."""
    if name not in SIGNATURES:
        raise StepError(f"no C kernel named {name!r}; there are {', '.join(sorted(SIGNATURES))}.")
    mode = choice()
    if mode == "torch":
        return None
    libs = _STATE["libs"]
    if name not in libs:
        try:
            libs[name] = _load_or_build(name)
        except (StepError, OSError, subprocess.SubprocessError) as err:
            libs[name] = None
            _STATE["why"][name] = str(err)
    if libs[name] is None and mode == "c":
        raise StepError(f"STEP_KERNELS=c but the C kernel {name!r} is unavailable: {_STATE['why'][name]} "
                        "Install a C compiler (gcc) or set STEP_KERNELS=auto to use the torch twins.")
    return libs[name]


def _load_or_build(name: str) -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise StepError("no C compiler found (looked for $CC, gcc, cc, clang).")
    source = HERE / f"{name}.c"
    target = cache_dir() / f"{name}-{_key(cc, source)}.so"
    if not target.exists():
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not target.exists():
                _build(cc, source, target)
    try:
        return _declare(ctypes.CDLL(str(target)), name)
    except OSError:  # a truncated or foreign file in the cache: build it again once
        target.unlink(missing_ok=True)
        _build(cc, source, target)
        return _declare(ctypes.CDLL(str(target)), name)


def implementation(name: str = "lif") -> str:
    """``"c"`` or ``"torch"`` plus, for the latter, why (for records and logs)."""
    if choice() == "torch":
        return "torch (STEP_KERNELS=torch)"
    lib = load(name)
    return "c" if lib is not None else f"torch (C kernel unavailable: {_STATE['why'][name]})"


def implementations() -> dict[str, str]:
    """:func:`implementation` of every kernel library."""
    return {name: implementation(name) for name in SIGNATURES}


def reset_for_tests() -> None:
    """Forget the loaded libraries so that the next call looks again (tests switch the env)."""
    _STATE.update(libs={}, why={}, selected=None)
