"""Builds the sdist and the wheel as a user's pip would, and checks what they carry.

Run by `tox -e package` (and so by .ci/run): `python -m build` (an isolated build with the setuptools that
pyproject.toml asks for), `twine check --strict`, the wheel's files (the package, py.typed, LICENSE; no
tests), the sdist's files (LICENSE, all of tests/ with conftest.py, helpers.py, sub-folders and data files),
then pytest on a focused set of tests from the unpacked sdist against the installed wheel.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
# a quick set that needs the sdist's test helpers, data files and sub-folders, and the typing test
SDIST_TESTS = ["tests/test_imports.py", "tests/test_typing.py", "tests/loop/test_state_io.py", "tests/test_demo.py"]


def run(*cmd: str, cwd: pathlib.Path = ROOT) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def check_wheel(wheel: pathlib.Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    required = ["ignite_speed/__init__.py", "ignite_speed/py.typed", "ignite_speed-0.1.0.dist-info/licenses/LICENSE"]
    missing = [n for n in required if n not in names]
    assert not missing, f"the wheel lacks {missing}"
    stray = [n for n in names if not n.startswith(("ignite_speed/", "ignite_speed-"))]
    assert not stray, f"the wheel carries files outside the package: {stray}"
    metadata = zipfile.ZipFile(wheel).read("ignite_speed-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: BSD-3-Clause" in metadata, "the wheel's metadata has no licence expression"


def check_sdist(sdist: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(into, filter="data")
    root = into / sdist.name.removesuffix(".tar.gz")
    tracked = subprocess.run(["git", "ls-files", "tests"], cwd=ROOT, capture_output=True, text=True, check=True)
    missing = [f for f in ["LICENSE", *tracked.stdout.split()] if not (root / f).exists()]
    assert not missing, f"the sdist lacks {missing}"
    return root


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        run(sys.executable, "-m", "build", "--outdir", str(out / "dist"))
        (sdist,) = (out / "dist").glob("*.tar.gz")
        (wheel,) = (out / "dist").glob("*.whl")
        run(sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel))
        check_wheel(wheel)
        unpacked = check_sdist(sdist, out / "sdist")
        run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel))
        # the sdist's tests against the installed wheel: the unpacked tree's ignite_speed/ is moved away
        (unpacked / "ignite_speed").rename(out / "ignite_speed_from_sdist")
        run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_TESTS, cwd=unpacked)
    print("package checks passed")


if __name__ == "__main__":
    main()
