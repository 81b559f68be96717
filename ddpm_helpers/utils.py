"""Small generic helpers shared by the modules: noise, eval mode, parameter counts, atomic writes, downloads."""

import http.client
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

import torch

from ddpm_helpers.checks import check_int, check_number


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


def _umask() -> int:
    """The process's umask (read from /proc where it is, else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, write):
    """Call ``write(tmp)`` on a temporary ``.<name>.*.tmp`` file beside ``path``, flush it to disk, then rename it
    over ``path`` (``os.replace`` is atomic: readers see the old file or the new one, never a partial one). The file
    gets the permissions the process's umask gives a new file (e.g. 0644), not mkstemp's 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode open() would, like any other
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class DownloadError(OSError):
    """A file could not be fetched whole and unchanged; the message names it."""


_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<?xml")
_PAGE_ADVICE = ("an HTML page came instead of the file (a captive portal, a network login page or a wrong address): "
                "open the address in a browser, log in to the network, or fix the mirror's address")


def _read_bounded(response, max_bytes):
    """The response body, at most ``max_bytes`` (+1 to notice more) bytes, and a problem (a string) or ``None``."""
    declared = response.headers.get("Content-Length")
    declared = int(declared) if declared is not None and declared.strip().isdigit() else None
    if max_bytes is not None and declared is not None and declared > max_bytes:
        return b"", f"the server announces {declared:,} bytes, more than the expected {max_bytes:,}"
    data = response.read() if max_bytes is None else response.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        return b"", f"the server sent more than the expected {max_bytes:,} bytes"
    if declared is not None and len(data) < declared:  # read(n) returns a cut body without raising IncompleteRead
        return b"", f"the connection closed after {len(data):,} of {declared:,} bytes (IncompleteRead)"
    content_type = response.headers.get("Content-Type", "") or ""
    if "html" in content_type.lower() or data[:64].lstrip().lower().startswith(_HTML_STARTS):
        return b"", _PAGE_ADVICE
    return data, None


def download(url, timeout, check=None, attempts=2, max_bytes=None):
    """The bytes at ``url`` by a plain GET (no credentials, no prompt, ``timeout`` seconds per request). A failed
    connection, a body cut short, an HTML page (a captive portal) or data for which ``check(data)`` returns a
    problem (a string) is fetched again, up to ``attempts`` times in all; then :class:`DownloadError` names the
    URL and the last problem. With ``max_bytes`` no more than that is read (a larger body is a problem)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "file:")):
        raise ValueError(f"url must be an http(s):// (or file:) address as a str, got url={url!r}")
    timeout = check_number(timeout, "timeout", low=0, low_open=True)  # 0 would make the socket non-blocking
    attempts = check_int(attempts, "attempts", low=1)
    if max_bytes is not None:
        max_bytes = check_int(max_bytes, "max_bytes", low=0)
    problem = "not tried"
    for _ in range(attempts):
        try:
            with urlopen(url, timeout=timeout) as response:
                data, problem = _read_bounded(response, max_bytes)
        except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts, resets, bad status
            problem = f"{type(error).__name__}: {error}"
            continue
        if problem is None:
            problem = check(data) if check is not None else None
        if problem is None:
            return data
    raise DownloadError(f"{url}: {problem}; tried {attempts} times")
