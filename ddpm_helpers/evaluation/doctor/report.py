"""What the doctor hands back: a :class:`Finding` per check and a :class:`Report` that prints them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    """One check: its ``name``, whether it ``passed``, what was measured (``detail``), and for a failed check the
    most likely ``cause`` and its ``fix``, in plain words."""

    name: str
    passed: bool
    detail: str
    cause: str = ""
    fix: str = ""

    def __str__(self) -> str:
        if self.passed:
            return f"  ok    {self.name}: {self.detail}"
        return f"  FAIL  {self.name}: {self.detail}\n        likely cause: {self.cause}\n        fix: {self.fix}"


@dataclass
class Report:
    """The findings of one or more checks, in the order they ran; the first failed one is the most likely cause
    (each check runs its most specific tests first)."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return all(f.passed for f in self.findings)

    @property
    def failed(self) -> list[Finding]:
        """The failed findings, most likely cause first."""
        return [f for f in self.findings if not f.passed]

    @property
    def most_likely(self) -> Finding | None:
        """The first failed finding, or None when everything passed."""
        failed = self.failed
        return failed[0] if failed else None

    def names(self, passed: bool | None = None) -> list[str]:
        """The names of the findings (only the passed or only the failed ones with ``passed``)."""
        return [f.name for f in self.findings if passed is None or f.passed == passed]

    def __add__(self, other: Report) -> Report:
        return Report(self.findings + other.findings)

    def __str__(self) -> str:
        head = ("all checks passed" if self.passed else
                f"{len(self.failed)} of {len(self.findings)} checks failed; most likely: {self.most_likely.cause}")
        return "\n".join([f"doctor: {head}", *(str(f) for f in self.findings)])

    def _repr_pretty_(self, printer, cycle):  # Jupyter shows the text, not the dataclass
        printer.text(str(self))
