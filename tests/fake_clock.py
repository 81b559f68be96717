"""A wall clock for budget tests: time passes only when a training batch is drawn."""

from ddpm_helpers.datasets import random_batches


class FakeClock:
    """Step ``s`` costs ``step_seconds(s, elapsed)`` seconds, ``elapsed`` being the seconds since the clock was made;
    the clock moves when ``batches`` draws that step's batch (random minibatches of ``batch_size`` rows of ``data``).
    Pass it as ``train(..., batches=clock.batches, clock=clock)``."""

    def __init__(self, step_seconds, data, batch_size=32):
        self.origin = self.now = 1000.0
        self.step_seconds = step_seconds
        draw = random_batches(data, batch_size)

        def batches(step, generator):
            self.now += self.step_seconds(step, self.now - self.origin)
            return draw(step, generator)

        self.batches = batches

    def __call__(self):
        return self.now

    def seconds_of(self, steps):
        """The seconds that ``steps`` steps take under this clock's speed (from a fresh start)."""
        elapsed = 0.0
        for step in range(steps):
            elapsed += self.step_seconds(step, elapsed)
        return elapsed


# Step time in seconds at (step, seconds since the start): normally 0.1 s, against a budget of 100 s.
SCENARIOS = {
    "3x slower during the calibration, then normal": lambda step, elapsed: 0.3 if step < 40 else 0.1,
    "2x faster from 30 % of the budget": lambda step, elapsed: 0.05 if elapsed >= 30 else 0.1,
    "1.5x slower from 70 % of the budget": lambda step, elapsed: 0.15 if elapsed >= 70 else 0.1,
    "10x slower from 60 % of the budget": lambda step, elapsed: 1.0 if elapsed >= 60 else 0.1,
}
