import numpy as np
import pytest
import torch

from ddpm_helpers.checks import (
    check_floating,
    check_int,
    check_model_output,
    check_name,
    check_number,
    check_positive_int,
    check_same_shape,
    check_timesteps,
)


def test_check_int_refuses_bools_floats_and_out_of_range():
    assert check_positive_int(3, "n") == 3
    assert check_positive_int(np.int64(4), "n") == 4
    assert check_int(0, "k", low=0) == 0
    for bad in (True, False, 2.0, "3", None, 0, -1):
        with pytest.raises(ValueError, match="n"):
            check_positive_int(bad, "n")
    with pytest.raises(ValueError, match=r"in \[1, 5\], got k=6"):
        check_int(6, "k", low=1, high=5)


def test_check_number_refuses_non_finite_bools_and_strings():
    assert check_number(0.5, "lr", low=0, low_open=True) == 0.5
    for bad in (float("inf"), float("nan"), True, "1e-3", None, 0.0, -1.0):
        with pytest.raises(ValueError, match="lr"):
            check_number(bad, "lr", low=0, low_open=True)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_number(1.0, "p", low=0, high=1, high_open=True)


def test_check_name():
    assert check_name("eps", ("eps", "x0"), "prediction") == "eps"
    with pytest.raises(ValueError, match="unknown prediction 'epsilon'"):
        check_name("epsilon", ("eps", "x0"), "prediction")
    with pytest.raises(ValueError, match="unknown prediction"):
        check_name(["eps"], ("eps", "x0"), "prediction")


def test_check_floating_names_the_dtype():
    check_floating(torch.zeros(2), "x0")
    with pytest.raises(ValueError, match="torch.uint8"):
        check_floating(torch.zeros(2, dtype=torch.uint8), "x0")
    with pytest.raises(ValueError, match="ndarray"):
        check_floating(np.zeros(2), "x0")


def test_check_timesteps_dtype_shape_and_range():
    check_timesteps(torch.tensor([0, 9]), 10, batch=2)
    check_timesteps(torch.tensor([0, 9], dtype=torch.int32), 10)
    for bad in (torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([1.0, 2.0]), torch.tensor([True, False]), [1, 2]):
        with pytest.raises(ValueError, match="int64"):
            check_timesteps(bad, 10)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        check_timesteps(torch.tensor([1, 2]), 10, batch=3)
    with pytest.raises(ValueError, match=r"t=\[10, -1\] out of range \[0, 10\)"):
        check_timesteps(torch.tensor([10, 3, -1]), 10)


def test_check_timesteps_skips_the_range_off_the_cpu():
    t = torch.tensor([99]).to("meta")  # values unreadable: a range check would fail, so none runs
    assert check_timesteps(t, 10) is t


def test_shape_checks():
    check_same_shape(a=torch.zeros(2, 3), b=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"'b': \(3, 2\)"):
        check_same_shape(a=torch.zeros(2, 3), b=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"model output shape \(2, 1\) does not match x0 shape \(2, 3\)"):
        check_model_output(torch.zeros(2, 1), torch.zeros(2, 3), "x0")
    with pytest.raises(ValueError, match="tuple"):
        check_model_output((torch.zeros(2, 3),), torch.zeros(2, 3))
