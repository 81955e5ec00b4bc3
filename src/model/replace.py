"""Swapping cells of a built network for variants that share their parameters.

The CPU kernels (src/kernels) and the frame-mask variants of the bucket graphs
(src/model/masked.py) do not change the model's classes: they replace whole cells of a built
network by cells of their own that hold the same child cells, so the parameters, their names
and every checkpoint stay as they were.
"""
from mindspore import nn


def share_children(new, cell):
    """Initialise ``new`` (an instance of a subclass of ``cell``'s class, whose own __init__
    runs this instead of its parent's) with the child cells, operators, attributes and
    training mode of ``cell``: the same objects, so the same parameters."""
    nn.Cell.__init__(new)
    for name, value in vars(cell).items():
        if not name.startswith("_") and name not in vars(new):
            setattr(new, name, value)
    for name, child in cell.name_cells().items():
        setattr(new, name, child)
    # A Cell keeps its own parameters and operators apart from its other attributes.
    for store in ("_params", "_primitives"):
        for name, value in getattr(cell, store, {}).items():
            setattr(new, name, value)
    new.training = cell.training


def replace_cells(network, replacement):
    """Replace, depth first, each cell of ``network`` for which ``replacement(cell)`` is not None.

    ``replacement(cell)`` returns the cell to put in its place, or None to keep it. The cells
    below a replacement are visited too. Returns the number of cells replaced. Parameter
    names are set back to their paths afterwards (a CellList renames what is put into it).
    """
    replaced = _replace_children(network, replacement)
    for name, parameter in network.parameters_and_names():
        parameter.name = name
    return replaced


def _replace_children(cell, replacement):
    replaced = 0
    for name, child in list(cell.name_cells().items()):
        new = replacement(child)
        if new is not None:
            if name.isdigit():
                cell[int(name)] = new
            else:
                setattr(cell, name, new)
            child = new
            replaced += 1
        replaced += _replace_children(child, replacement)
    return replaced
