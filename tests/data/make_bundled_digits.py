"""Write the 1,000 MNIST digits bundled with predlearn (run once; kept for provenance).

The bundle is the first 1,000 images (indices 0-999, in file order) of the official MNIST test set
``t10k-images-idx3-ubyte.gz`` and their labels. Usage::

    python tests/data/make_bundled_digits.py /work/shared/data/mnist

The source files are checked against the official md5 sums before anything is written.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from predlearn.datamodules.idx import read_idx, write_idx

COUNT = 1000
SOURCES = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
OUTPUT = Path(__file__).resolve().parents[2] / "datamodules" / "bundled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist_dir", type=Path, help="folder holding the official t10k files")
    args = parser.parse_args()
    for name, md5 in SOURCES.items():
        digest = hashlib.md5((args.mnist_dir / name).read_bytes()).hexdigest()
        if digest != md5:
            raise SystemExit(f"{name}: md5 {digest}, expected the official {md5}")
    images = read_idx(args.mnist_dir / "t10k-images-idx3-ubyte.gz")[:COUNT]
    labels = read_idx(args.mnist_dir / "t10k-labels-idx1-ubyte.gz")[:COUNT]
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        out = write_idx(OUTPUT / f"mnist_digits_1000-{kind}-ubyte.gz", array)
        print(f"wrote {out} {array.shape} md5 {hashlib.md5(out.read_bytes()).hexdigest()}")
    print("images per class:", [int((labels == c).sum()) for c in range(10)])


if __name__ == "__main__":
    main()
