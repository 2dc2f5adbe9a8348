"""Type-check predlearn as it installs: mypy on a link tree of [tool.setuptools.package-dir].

`zoo/` and `datamodules/` install as `predlearn.zoo` and `predlearn.datamodules`; mypy has no
setting that maps a folder to another package's name, and cannot follow the editable install's
import hook. So this lays out the installed package as symbolic links to the real files and
folders, under build/typecheck/ (git ignores build/; brought up to date on each run), runs mypy
on it (its public API, with pyproject.toml's [tool.mypy] settings and any arguments given here)
and writes each path in mypy's report as the real file's, e.g. `zoo/cdna.py`.

The tree stays in one place, with its own mypy cache beside it: mypy's cache keeps each
module's errors with the path it was checked under, and replays them while the module is
unchanged. Usage: `python scripts/typecheck.py [mypy arguments]`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

from mypy import api

ROOT = Path(__file__).resolve().parent.parent
TREE = Path("build", "typecheck")  # relative to ROOT


def sync_tree(tree: Path, package_dir: dict[str, str]) -> None:
    """Lay out each mapped package at its dotted name under ``tree``, as links to its entries
    (a mapped subpackage gets a folder of its own); links to entries now gone are removed."""
    mapped = set(package_dir)
    for name, folder in sorted(package_dir.items()):
        dest = tree.joinpath(*name.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        wanted = {entry.name: entry for entry in (ROOT / folder).iterdir()
                  if f"{name}.{entry.name}" not in mapped}
        for link in dest.iterdir():
            if link.is_symlink() and Path(os.readlink(link)) != wanted.get(link.name):
                link.unlink()
        for entry_name, entry in wanted.items():
            if not (dest / entry_name).is_symlink():
                (dest / entry_name).symlink_to(entry, target_is_directory=entry.is_dir())


def main(argv: list[str]) -> int:
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_dir: dict[str, str] = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    caller = Path.cwd()
    os.chdir(ROOT)  # mypy reads pyproject.toml from here
    sync_tree(TREE, package_dir)
    tops = sorted({name.split(".")[0] for name in package_dir})
    out, err, status = api.run([
        "--cache-dir", str(TREE / ".mypy_cache"), *(str(TREE / top) for top in tops), *argv,
    ])
    # the tree's paths (relative, or absolute with --show-absolute-path) back to the real
    # folders, each package's before its parent's
    sep = re.escape(os.sep)
    for name in sorted(package_dir, key=lambda n: -n.count(".")):
        linked, real = TREE.joinpath(*name.split(".")), ROOT / package_dir[name]
        for pattern, path in (
            (re.escape(str(ROOT / linked)) + sep, str(real) + os.sep),
            (f"(?<![\\w.{sep}-]){re.escape(str(linked))}{sep}",
             os.path.relpath(real, caller) + os.sep),
        ):
            out = re.sub(pattern, lambda _, path=path: path, out)
            err = re.sub(pattern, lambda _, path=path: path, err)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
