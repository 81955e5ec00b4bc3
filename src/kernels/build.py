"""How the custom CPU kernels are compiled (scripts/build_kernels.py runs it).

Builds ``src/kernels/build/libecapa_kernels.so`` from the ``.cc`` files here with g++, against
the oneDNN library that MindSpore ships (``mindspore/lib/libdnnl.so.3``) and the oneDNN
headers of the ``onednn-devel`` package (installed into ``<venv>/include``). When it cannot
build, :func:`build` raises RuntimeError naming what is missing, and ``cpu_kernels`` falls
back to MindSpore's own ops (see cells.py).
"""
import os
import shutil
import subprocess
import sys
import sysconfig

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = [os.path.join(KERNEL_DIR, name) for name in ("runtime.cc", "matmul.cc", "tdnn.cc", "se.cc", "reduce.cc")]
LIBRARY = os.path.join(KERNEL_DIR, "build", "libecapa_kernels.so")


def mindspore_onednn():
    """Path of the oneDNN library MindSpore loads, or None."""
    import importlib.util

    spec = importlib.util.find_spec("mindspore")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "lib", "libdnnl.so.3")
    return path if os.path.isfile(path) else None


def onednn_headers():
    """Folder holding ``oneapi/dnnl/dnnl.hpp`` in this environment, or None."""
    for root in (sysconfig.get_path("data"), sys.prefix):
        include = os.path.join(root, "include")
        if os.path.isfile(os.path.join(include, "oneapi", "dnnl", "dnnl.hpp")):
            return include
    return None


def build_command(output=LIBRARY):
    """The g++ command that builds the kernels, or raise RuntimeError naming what is missing."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    library, headers = mindspore_onednn(), onednn_headers()
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++, or $CXX) on PATH")
    if library is None:
        raise RuntimeError("MindSpore's oneDNN (mindspore/lib/libdnnl.so.3) was not found")
    if headers is None:
        raise RuntimeError("the oneDNN headers were not found (pip install onednn-devel)")
    return [compiler, "-O3", "-std=c++17", "-shared", "-fPIC", f"-I{headers}", *SOURCES, "-o", output, library,
            f"-Wl,-rpath,{os.path.dirname(library)}", "-Wl,--no-undefined", "-lpthread"]


def build(output=LIBRARY):
    """Compile the kernels into ``output``; raises RuntimeError with the compiler's message."""
    command = build_command(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"g++ failed on {', '.join(SOURCES)}:\n{result.stderr.strip()}")
    return output

