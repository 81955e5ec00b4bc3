"""Custom CPU kernels run through ``mindspore.ops.Custom(func_type="aot")``.

``matmul.cc`` holds float32 and bfloat16 matrix products on oneDNN, ``tdnn.cc`` whole TDNN
blocks (convolution, ReLU, batch norm; inference and training with its gradient), ``se.cc``
the squeeze-excitation, ``reduce.cc`` the maximum over time, ``runtime.cc`` what they share.
``build.py`` compiles them into ``build/libecapa_kernels.so`` (scripts/build_kernels.py,
which scripts/install.sh runs); ``cells.py`` wraps the kernels as MindSpore Cells with
their gradients and says why they cannot be used, where they cannot.
"""
