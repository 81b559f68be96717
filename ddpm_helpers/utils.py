"""Small generic helpers shared by the modules: noise, eval mode, parameter counts, atomic writes, downloads."""

import http.client
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

import torch


def noise_like(x, generator=None):
    """Standard normal noise ε ~ N(0, I) with ``x``'s shape, dtype and device.

    With a ``generator`` the noise is drawn on the generator's device and then moved, so
    a CPU generator gives the same noise on every device.
    """
    if generator is None:
        return torch.randn(x.shape, dtype=x.dtype, device=x.device)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


@contextmanager
def eval_no_grad(model):
    """Run ``model`` under ``torch.no_grad()`` in eval mode, restoring training mode afterwards."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def count_parameters(model):
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def write_atomic(path, write):
    """Call ``write(tmp)`` on a temporary ``.<name>.*.tmp`` file beside ``path``, flush it to disk, then rename it
    over ``path`` (``os.replace`` is atomic: readers see the old file or the new one, never a partial one)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class DownloadError(OSError):
    """A file could not be fetched whole and unchanged; the message names it."""


def download(url, timeout, check=None, attempts=2):
    """The bytes at ``url`` by a plain GET (no credentials, no prompt, ``timeout`` seconds per request). A failed
    connection, or data for which ``check(data)`` returns a problem (a string), is fetched again, up to
    ``attempts`` times in all; then :class:`DownloadError` names the URL and the last problem."""
    problem = "not tried"
    for _ in range(attempts):
        try:
            with urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts, resets, cut bodies
            problem = f"{type(error).__name__}: {error}"
            continue
        problem = check(data) if check is not None else None
        if problem is None:
            return data
    raise DownloadError(f"{url}: {problem}; tried {attempts} times")
