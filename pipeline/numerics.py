"""Pin the CPU kernels that numpy, OpenBLAS and TensorFlow choose at run time, so training gives
the same bytes on every x86-64 machine with AVX2, with or without AVX-512.

Found by training on an AVX-512 machine (AMD EPYC) and on the same machine under
`qemu-x86_64 -cpu Haswell` (AVX2, no AVX-512), which gives the bytes a real AVX2 machine gave:

- TensorFlow's CPU matrix products run through oneDNN's sgemm (TensorFlow's Eigen contraction
  kernel), even with `TF_ENABLE_ONEDNN_OPTS=0`; oneDNN picks AVX-512 code where the CPU has it.
  That alone changed `model.keras`. `ONEDNN_MAX_CPU_ISA=AVX2` caps it.
- OpenBLAS (numpy's and scipy's, used by the scikit-learn baseline) picks a kernel family by CPU;
  the family changed `baseline.joblib`. `OPENBLAS_CORETYPE=Haswell` fixes it (AVX2 + FMA), and one
  thread keeps its reductions in one order on any core count.
- numpy's own SIMD loops dispatch up to AVX-512 (no difference measured on this data): capped at
  AVX2 (X86_V3) so that every machine runs the same loops.

These are read when the libraries load, so they are set when the `pipeline` package is imported,
before any stage imports numpy or TensorFlow. `check_pinned` fails a stage whose process loaded
numpy first. Not covered: CPUs without AVX2/FMA (pre-2013) and other architectures (Arm): there the
pins cannot apply and training may give other bytes; the DVC remote is what makes images
independent of the training machine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

PINNED_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
REQUIRED_CPU_FLAGS = ("avx2", "fma")  # what the pinned kernels (Haswell, AVX2) execute


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is absent)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def unpinnable_reason(machine: str | None = None, flags: set[str] | None = None) -> str:
    """Why the pins cannot apply on this machine, or '' when they can."""
    machine = machine or platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return f"the CPU is {machine}, not x86-64"
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in (cpu_flags() if flags is None else flags)]
    return f"the CPU lacks {', '.join(missing)}" if missing else ""


def pin_cpu_kernels(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """Set PINNED_ENV in `environ` (overriding the machine's values); return why not, or ''."""
    if reason := unpinnable_reason():
        return reason
    environ.update(PINNED_ENV)
    return ""


def check_pinned() -> str:
    """One line saying which kernels run; raises RuntimeError if numpy loaded before the pins."""
    if reason := unpinnable_reason():
        return f"CPU kernels not pinned ({reason}): the trained bytes may differ from dvc.lock's"
    from threadpoolctl import threadpool_info

    blas = {info.get("architecture") for info in threadpool_info() if info.get("internal_api") == "openblas"}
    if blas - {PINNED_ENV["OPENBLAS_CORETYPE"]}:
        raise RuntimeError(
            f"OpenBLAS runs {', '.join(sorted(map(str, blas)))} kernels, not the pinned "
            f"{PINNED_ENV['OPENBLAS_CORETYPE']}: import `pipeline` before numpy (python -m pipeline.<stage>)."
        )
    return (
        f"CPU kernels pinned: oneDNN <= {PINNED_ENV['ONEDNN_MAX_CPU_ISA']}, "
        f"OpenBLAS {PINNED_ENV['OPENBLAS_CORETYPE']} x{PINNED_ENV['OPENBLAS_NUM_THREADS']}, numpy <= X86_V3"
    )
