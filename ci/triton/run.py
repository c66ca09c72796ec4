"""What `nox -s triton` runs: the tests against a real Triton, then (`--bench`) HTTP against gRPC.

    nox -s triton                    tests/triton against the wheel's tritonserver (Python backend)
    nox -s triton -- --image         the same tests against the official image (GitHub Actions)
    nox -s triton -- --bench         the tests, then the HTTP vs gRPC figures (ci/triton/bench.py)
    nox -s triton -- --serve         no tests: serve until Ctrl-C, for curl and your own clients

Other arguments go to pytest (`nox -s triton -- -k grpc`). The tests start their own server (the
fixture in tests/triton/conftest.py, told which by TRITON_SERVER); the bench starts another.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ci.project import ROOT, UserError, main_guard
from ci.triton import bench, server


def main(argv: list[str] | None = None) -> None:
    """Parse the session's arguments, run the tests (and the bench, or only serve)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", action="store_true", help=f"the official image ({server.IMAGE})")
    parser.add_argument("--bench", action="store_true", help="after the tests, measure HTTP against gRPC")
    parser.add_argument("--duration", type=float, default=5.0, help="bench seconds per cell (default 5)")
    parser.add_argument("--serve", action="store_true", help="serve until Ctrl-C instead of testing")
    args, pytest_args = parser.parse_known_args(argv)
    kind = "image" if args.image else "wheel"
    if args.serve:
        sys.argv = [sys.argv[0], *(["--image"] if args.image else [])]
        server.main()
        return
    results = f"--junitxml=build/test-results/triton-{kind}.xml"
    command = [sys.executable, "-m", "pytest", "tests/triton", "-m", "triton", results, *pytest_args]
    code = subprocess.run(command, cwd=ROOT, env={**os.environ, server.ENV_VAR: kind}, check=False).returncode
    if code:
        raise UserError(f"the Triton tests failed (pytest exit code {code}); the failures are listed above.")
    if args.bench:
        with server.serve(kind) as running:
            bench.run(running, args.duration)


if __name__ == "__main__":
    main_guard(main)
