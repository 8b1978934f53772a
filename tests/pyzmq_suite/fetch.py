"""Fetch pyzmq's own test modules for the installed pyzmq version.

``python -m tests.pyzmq_suite.fetch [--dest DIR]`` downloads the source
release of the installed pyzmq with pip (``pip download --no-binary pyzmq
--no-deps pyzmq==<version>``) and extracts, flat into ``DIR/pyzmq-<version>/``,
the test modules the drop-in run uses plus the helpers they import
(``zmq_test_utils.py`` and the suite's ``conftest.py``). It prints that
directory. Files are found by name anywhere in the archive, so a release that
keeps its tests elsewhere (``tests/``, ``zmq/tests/``) still works; a module
that is missing is an error, never a silent gap.

Nothing fetched is part of the repository: the default ``DIR`` is
``build/pyzmq-suite`` (git-ignored); tox passes its own directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEST = ROOT / "build" / "pyzmq-suite"

#: The test modules whose green classes are the drop-in's measure.
MODULES = (
    "test_socket.py",
    "test_reqrep.py",
    "test_pubsub.py",
    "test_multipart.py",
    "test_poll.py",
    "test_pair.py",
)
#: Helpers the modules import or that configure them; the first is required
#: when the release has it (pyzmq >= 26), conftest.py goes with the modules.
HELPERS = ("zmq_test_utils.py", "conftest.py")


def installed_version() -> str:
    """The version of the pyzmq this interpreter imports."""
    return version("pyzmq")


def download(pyzmq_version: str, dest: Path) -> Path:
    """The sdist of ``pyzmq_version`` in ``dest``, downloaded by pip unless there.

    ``--no-binary pyzmq`` (not ``:all:``) forces the source release of pyzmq
    alone: pip still prepares its metadata, and with ``:all:`` it would build
    the build backend's own requirements from source too (minutes, not seconds).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for existing in sorted(dest.glob(f"pyzmq-{pyzmq_version}.tar.gz")):
        return existing
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        "pyzmq",
        "--dest",
        str(dest),
        f"pyzmq=={pyzmq_version}",
    ]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    found = sorted(dest.glob(f"pyzmq-{pyzmq_version}.tar.gz"))
    if not found:
        raise SystemExit(f"pip did not leave pyzmq-{pyzmq_version}.tar.gz in {dest}")
    return found[0]


def _pick(names: list[str], basename: str, near: PurePosixPath | None) -> str | None:
    """The archive member called ``basename``: the one in ``near`` if given,
    else one in a directory named ``tests`` (shortest path first)."""
    hits = [n for n in names if PurePosixPath(n).name == basename]
    if near is not None:
        hits = [n for n in hits if PurePosixPath(n).parent == near]
        return hits[0] if hits else None
    hits.sort(key=lambda n: (PurePosixPath(n).parent.name != "tests", len(n), n))
    return hits[0] if hits else None


def extract(sdist: Path, out: Path) -> Path:
    """Extract :data:`MODULES` and :data:`HELPERS` from ``sdist`` flat into ``out``."""
    with tarfile.open(sdist) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        names = sorted(members)
        first = _pick(names, MODULES[0], None)
        if first is None:
            raise SystemExit(f"{sdist.name} has no {MODULES[0]}")
        test_dir = PurePosixPath(first).parent
        wanted: dict[str, str] = {}
        for module in MODULES:
            name = _pick(names, module, test_dir)
            if name is None:
                raise SystemExit(f"{sdist.name} has no {module} next to {first}")
            wanted[module] = name
        for helper in HELPERS:
            name = _pick(names, helper, test_dir)
            if name is None and helper == "zmq_test_utils.py":
                # Before pyzmq 26 the helpers were the installed zmq.tests package.
                print(
                    f"note: {sdist.name} has no {helper}; modules import zmq.tests", file=sys.stderr
                )
            if name is not None:
                wanted[helper] = name
        out.mkdir(parents=True, exist_ok=True)
        for target, name in wanted.items():
            source = tar.extractfile(members[name])
            assert source is not None
            (out / target).write_bytes(source.read())
    return out


def fetch(dest: Path = DEFAULT_DEST, pyzmq_version: str | None = None) -> Path:
    """Download (if needed) and extract; the directory holding the test modules."""
    pyzmq_version = pyzmq_version or installed_version()
    sdist = download(pyzmq_version, dest)
    return extract(sdist, dest / f"pyzmq-{pyzmq_version}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="download directory")
    parser.add_argument("--version", help="pyzmq version (default: the installed one)")
    args = parser.parse_args(argv)
    print(fetch(args.dest.resolve(), args.version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
