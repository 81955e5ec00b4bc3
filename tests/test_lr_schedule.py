"""Cyclic learning rate: values checked against hand-computed triangles."""
import pytest

from src.train.lr_schedule import cyclic_lr, half_cycle_steps

# base 1, max 3, half-cycle of 4 steps: the rate moves by (3 - 1) / 4 = 0.5 per step, so
# every value below is exact in binary floating point.
TRIANGLE = [1.0, 1.5, 2.0, 2.5, 3.0, 2.5, 2.0, 1.5]


def test_triangular_two_full_cycles():
    assert cyclic_lr(1.0, 3.0, 4, 16) == TRIANGLE * 2


def test_start_peak_end_and_quarter_points_with_recipe_rates():
    base, peak, step_size = 1e-6, 1e-4, 100
    rates = cyclic_lr(base, peak, step_size, 2 * step_size + 1)
    assert rates[0] == base
    assert rates[step_size] == pytest.approx(peak, rel=1e-12)
    assert rates[2 * step_size] == base
    midpoint = 5.05e-5  # (1e-6 + 1e-4) / 2
    assert rates[step_size // 2] == pytest.approx(midpoint, rel=1e-12)
    assert rates[3 * step_size // 2] == pytest.approx(midpoint, rel=1e-12)
    # One step up from the start: base + (peak - base) / 100 = 1e-6 + 9.9e-7.
    assert rates[1] == pytest.approx(1.99e-6, rel=1e-12)
    assert max(rates) == rates[step_size]


def test_triangular2_halves_the_height_every_cycle():
    rates = cyclic_lr(1.0, 3.0, 4, 24, mode="triangular2")
    assert rates[:8] == TRIANGLE
    # Second cycle: height 2 / 2 = 1, so 0.25 per step, peak 2.0.
    assert rates[8:16] == [1.0, 1.25, 1.5, 1.75, 2.0, 1.75, 1.5, 1.25]
    # Third cycle: height 0.5, peak 1.5.
    assert rates[16:24] == [1.0, 1.125, 1.25, 1.375, 1.5, 1.375, 1.25, 1.125]


def test_triangular_keeps_the_full_height():
    rates = cyclic_lr(1.0, 3.0, 4, 40)
    assert [rates[step] for step in (4, 12, 20, 28, 36)] == [3.0] * 5


@pytest.mark.parametrize("total_steps", [0, 1, 7, 8, 9, 1001])
def test_one_rate_per_step(total_steps):
    assert len(cyclic_lr(1e-6, 1e-4, 4, total_steps)) == total_steps


@pytest.mark.parametrize("step_size", [0, -3])
def test_non_positive_step_size_is_rejected(step_size):
    with pytest.raises(ValueError, match="step_size"):
        cyclic_lr(1e-6, 1e-4, step_size, 10)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="exp_range"):
        cyclic_lr(1e-6, 1e-4, 4, 10, mode="exp_range")


def test_half_cycle_defaults_to_two_epochs():
    assert half_cycle_steps(0, 50) == 100
    assert half_cycle_steps(7, 50) == 7
