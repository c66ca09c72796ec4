"""CPU kernel pins: set before numpy loads, and checked in the running process."""

from __future__ import annotations

import os

from pipeline import CPU_KERNELS_UNPINNED, numerics


def test_importing_pipeline_pins_the_kernels():
    """On this (x86-64, AVX2) machine, importing `pipeline` set every pinned variable."""
    if CPU_KERNELS_UNPINNED:
        assert numerics.unpinnable_reason()
        return
    for name, value in numerics.PINNED_ENV.items():
        assert os.environ[name] == value


def test_pins_took_effect_in_this_process():
    """OpenBLAS runs the pinned kernel family here, because conftest imports `pipeline` before numpy."""
    line = numerics.check_pinned()
    assert line.startswith(("CPU kernels pinned", "CPU kernels not pinned"))


def test_pin_overrides_the_machines_values():
    """A machine's own OPENBLAS_CORETYPE (some set one) is replaced, so every machine runs the same kernels."""
    env = {"OPENBLAS_CORETYPE": "SkylakeX"}
    if not numerics.pin_cpu_kernels(env):
        assert env["OPENBLAS_CORETYPE"] == "Haswell"
        assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
