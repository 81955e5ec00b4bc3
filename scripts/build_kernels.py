"""Compile the custom CPU kernels (src/kernels/*.cc) into src/kernels/build/libecapa_kernels.so.

    python scripts/build_kernels.py

scripts/install.sh runs it. Exits with status 1 and one line on what is missing (compiler,
MindSpore's oneDNN, the oneDNN headers) when it cannot build; ``cpu_kernels`` then falls
back to MindSpore's own ops.
"""
import sys

from src.kernels.build import build


def main():
    try:
        path = build()
    except RuntimeError as error:
        print(f"custom CPU kernels not built: {error}", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
