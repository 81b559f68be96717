"""``python -m ddpm_helpers.train_cli <recipe>``: train the U-Net of notebook 04 or 05 from a shell (also under
``torchrun``). The command line itself lives in ``ddpm_helpers.training.cli``."""

from ddpm_helpers.training.cli import main

if __name__ == "__main__":
    main()
