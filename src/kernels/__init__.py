"""Custom CPU kernels run through ``mindspore.ops.Custom(func_type="aot")``.

``bf16_matmul.cc`` holds bfloat16 matrix products on oneDNN; ``build.py`` compiles it
into ``build/libecapa_kernels.so`` (scripts/install.sh runs it); ``products.py`` wraps the
kernels as a MindSpore Cell with its gradient and says why they cannot be used, where
they cannot.
"""
