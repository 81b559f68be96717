"""Setup shared by the unit tests (nbval runs the notebooks in their own kernels, untouched by this)."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw off-screen, whatever MPLBACKEND says
torch.set_num_threads(1)  # the tensors are small: one thread is as fast and steadier on a busy machine


@pytest.fixture(autouse=True)
def outputs_in_tmp(tmp_path, monkeypatch):
    """Whatever a test writes through config.outputs_dir() lands in its own tmp folder, not in outputs/."""
    monkeypatch.setenv("DDPM_OUTPUT_DIR", str(tmp_path / "outputs"))
