"""The fixed-length inference path: export, feature files, a CPU runner and result files.

export.py writes the embedding network with a fixed input (1, length, 80); preprocess.py
turns the evaluation audio into one raw float32 feature file per utterance; the Ascend 310
program (ascend310_infer/) or :mod:`src.inference.runner` turns each feature file into an
embedding file; postprocess.py scores the trials from the embedding files.
"""
