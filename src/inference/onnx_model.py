"""Running an exported ONNX model with onnxruntime (src/inference/model_file.py reads it).

export.py writes ONNX files with one float32 input 'features' (1, length, 80) and one
output 'embedding' (1, emb_size); :class:`OnnxModel` runs such a file on the CPU.
"""
import math
import os

import numpy as np

from src.inference.model_file import onnx_session, onnx_shapes


class OnnxModel:
    """A fixed-shape ONNX model run on one feature array at a time (the interface of MindIRModel)."""

    def __init__(self, path):
        self.session = onnx_session(path)
        self.input_shape, self.output_shape = onnx_shapes(self.session, os.fspath(path))
        self.input_size = math.prod(self.input_shape)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, features):
        """features: float32 array of input_size values -> (output size,) float32 embedding."""
        batch = np.asarray(features, dtype=np.float32).reshape(self.input_shape)
        return self.session.run(None, {self.input_name: batch})[0].reshape(-1)
