"""Evaluation: the numbers the notebooks judge samples by, each meant to be printed beside its real-data yardstick.

``metrics2d.py`` (two-sample energy distance and mode coverage of 2-D point clouds, notebooks 02–03),
``mnist_eval.py`` (the digit judge: Fréchet and kernel distances, confident share, label agreement, notebook 04),
``intervals.py`` (Wilson and jackknife intervals of those numbers over another draw of samples),
``neighbours.py`` (the nearest-training-image check for memorization, notebook 05), ``copies.py`` (the same
check over every flip and crop the augmentation draws: the copies a memorizing model would make),
``color_stats.py`` (hue histograms of image sets, notebook 05), ``reference_results.py`` (benchmark results
shipped as package data) and ``doctor/`` (checks of a reader's own schedule, data, step, network and EMA that name
the most likely cause of what fails, notebook 06). Import the modules, e.g.
``from ddpm_helpers.evaluation import mnist_eval``.
"""
