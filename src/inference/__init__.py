"""The fixed-length inference path: export, feature files, CPU runners and result files.

export.py writes the embedding network, with batch norm folded (:mod:`.folding`), with a fixed
input (1, length, 80) as MindIR, AIR or ONNX; preprocess.py turns the evaluation audio into
raw float32 feature files, one per utterance or one per window of it (:mod:`.fixed_length`);
the Ascend 310 program (ascend310_infer/), :mod:`.runner` (MindIR) or :mod:`.onnx_model`
(onnxruntime) turns each feature file into an embedding file; postprocess.py scores the
trials from the embedding files, averaging the windows of an utterance (:mod:`.results`).
"""
