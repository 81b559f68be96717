"""Train the MNIST judge of notebook 04 once and export it to ``weights/mnist_judge.safetensors``.

    python benchmarks/train_judge.py            # about a minute or two on a 2-core CPU

The judge is ``evaluation.mnist_eval.MNISTClassifier`` trained by ``train_classifier`` (two epochs of Adam,
OneCycle, light shifts, seed 0) on the 60,000 MNIST training digits (``DDPM_DATA_DIR``). Every notebook and
benchmark loads this one file (``mnist_eval.load_judge``), so the judge and the real-data floor it gives are
the same on every machine. The file's metadata records the steps, the seed and the test accuracy; the script
updates ``weights/SHA256SUMS`` and prints the accuracy and the line to put into ``PINNED`` in
``ddpm_helpers/training/pretrained.py`` (the checksums the package trusts). Prints, never asserts.
"""

import time

from ddpm_helpers import config
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.training.pretrained import export_weights, sha256_of

WEIGHTS = config.package_checkout() / "weights"

if __name__ == "__main__":
    start = time.perf_counter()
    model, accuracy = mnist_eval.train_classifier(steps=mnist_eval.DEFAULT_CLASSIFIER_STEPS, seed=0)
    path = export_weights(model, WEIGHTS / f"{mnist_eval.JUDGE_WEIGHTS}.safetensors",
                          steps=mnist_eval.DEFAULT_CLASSIFIER_STEPS, seed=0, batch_size=128,
                          test_accuracy=round(accuracy, 6), recipe="mnist_eval.train_classifier")
    print(f"{path.name}: test accuracy {100 * accuracy:.2f} % after {time.perf_counter() - start:.0f} s")
    print(f'PINNED entry: "{path.name}": ("{sha256_of(path)}", {path.stat().st_size}),')
