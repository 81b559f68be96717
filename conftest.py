"""Makes a bare `pytest --nbval` from the repository root run the notebook checks of `python tasks.py test`.

Before any kernel starts, the environment gets the settings of ``tasks.check_environment`` (quick profile,
outputs/tests/, ../shared/data beside the checkout; an explicit DDPM_PROFILE, DDPM_OUTPUT_DIR or DDPM_DATA_DIR
wins), and with --nbval and no paths given, notebooks/ is collected beside the testpaths. Plain `pytest` runs the
unit tests only; `pytest --nbval notebooks/04_mnist.ipynb` runs that notebook only.
"""

import os

import tasks


def pytest_configure(config):
    os.environ.update(tasks.check_environment(dict(os.environ)))  # kernels inherit it
    nbval = config.getoption("nbval", False) or config.getoption("nbval_lax", False)
    if nbval and config.args_source == config.ArgsSource.TESTPATHS and tasks.NOTEBOOKS.is_dir():
        config.args.append(str(tasks.NOTEBOOKS))
