"""Cyclic learning rate (Smith, 2017) as a per-step list for MindSpore optimizers.

The rate rises linearly from ``base_lr`` to ``max_lr`` over ``step_size`` steps (a
half-cycle) and falls back over the next ``step_size``. 'triangular' repeats the same
triangle; 'triangular2' halves its height every cycle.
"""


def cyclic_lr(base_lr, max_lr, step_size, total_steps, mode="triangular"):
    """Learning rate of each of ``total_steps`` steps, as a list of floats.

    Step 0 has base_lr, step ``step_size`` has max_lr, step ``2 * step_size`` is back
    at base_lr. With 'triangular2' the height max_lr - base_lr of cycle c (c = 0, 1, ...)
    is multiplied by 2**-c.
    """
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if mode not in ("triangular", "triangular2"):
        raise ValueError(f"mode must be 'triangular' or 'triangular2', got {mode!r}")
    rates = []
    for step in range(total_steps):
        cycle = step // (2 * step_size)
        position = step - 2 * cycle * step_size
        rise = 1.0 - abs(position / step_size - 1.0)
        height = 1.0 if mode == "triangular" else 0.5 ** cycle
        rates.append(base_lr + (max_lr - base_lr) * rise * height)
    return rates


def half_cycle_steps(configured, steps_per_epoch):
    """The half-cycle length: the configured value, or two epochs' steps when it is 0."""
    return configured if configured > 0 else 2 * steps_per_epoch
