"""Custom CPU kernels run through ``mindspore.ops.Custom(func_type="aot")``.

``matmul.cc`` holds bfloat16 matrix products on oneDNN, ``tdnn.cc`` whole TDNN blocks
(convolution, ReLU, batch norm; inference and training with its gradient), ``runtime.cc``
what they share. ``build.py`` compiles them into ``build/libecapa_kernels.so``
(scripts/install.sh runs it); ``products.py`` wraps the kernels as MindSpore Cells with
their gradients and says why they cannot be used, where they cannot.
"""
