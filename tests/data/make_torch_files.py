"""Write the PyTorch files that tests/test_torch_file.py reads back, with torch itself.

Run once in a scratch environment that has torch (the project and its tests do not need it):

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.13.0 numpy
    PYTHONPATH=. /tmp/peers/bin/python tests/data/make_torch_files.py

torch_tensors.pt: a state dict of a Conv1d and a BatchNorm1d (saved as nn.Module.state_dict()
saves it), plus tensors of every kind a checkpoint holds: several dtypes, a transposed view, a
view with a storage offset, a parameter and a 0-d tensor. Their values are arange-based, so
the test knows them without this script.
torch_nested.pt: {"model": that state dict, "epoch": 3, "name": "ecapa", "shape": torch.Size}.
It then checks that torch.load (weights_only) reads what write_torch_file writes.
"""
import os
import tempfile

import numpy as np
import torch

from src.interop.torch_file import write_torch_file

HERE = os.path.dirname(os.path.abspath(__file__))


def state():
    module = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.BatchNorm1d(3))
    with torch.no_grad():
        module[0].weight.copy_(torch.arange(18, dtype=torch.float32).reshape(3, 2, 3) / 10)
        module[0].bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
        module[1].running_mean.copy_(torch.tensor([0.5, 1.5, 2.5]))
        module[1].num_batches_tracked.fill_(7)
    tensors = module.state_dict()
    grid = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors["transposed"] = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    tensors["row_view"] = grid[1]
    tensors["half"] = torch.tensor([1.5, -2.0], dtype=torch.float16)
    tensors["bfloat16"] = torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16)
    tensors["float64"] = torch.tensor([0.1, 0.2], dtype=torch.float64)
    tensors["int32"] = torch.tensor([1, -2], dtype=torch.int32)
    tensors["bool"] = torch.tensor([True, False])
    tensors["parameter"] = torch.nn.Parameter(torch.full((2,), 0.25))
    tensors["scalar"] = torch.tensor(3.5)
    return tensors


def main():
    tensors = state()
    torch.save(tensors, os.path.join(HERE, "torch_tensors.pt"))
    torch.save({"model": tensors, "epoch": 3, "name": "ecapa", "shape": torch.Size([3, 4])},
               os.path.join(HERE, "torch_nested.pt"))
    written = {name: value.detach().numpy() for name, value in tensors.items() if value.dtype != torch.bfloat16}
    with tempfile.TemporaryDirectory() as folder:
        loaded = torch.load(write_torch_file(os.path.join(folder, "written.pt"), written), weights_only=True)
    assert list(loaded) == list(written)
    for name, value in written.items():
        assert np.array_equal(loaded[name].numpy(), value) and loaded[name].numpy().dtype == value.dtype, name
    print(f"torch.load read the {len(written)} tensors write_torch_file wrote")


if __name__ == "__main__":
    main()
