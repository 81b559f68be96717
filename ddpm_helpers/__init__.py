"""Helper package for the ddpm-from-scratch notebooks.

Each module holds the reusable version of something a notebook derives; import the
submodules directly, e.g. ``from ddpm_helpers.diffusion import Diffusion``. The lesson math is flat here;
the machinery lives in ``samplers/``, ``datasets/``, ``training/`` and ``evaluation/``.
"""

__version__ = "0.9.2"  # notebooks check it (their first cell); bump it with CHANGELOG.md
