"""Build the edge bundle: the Lambda zip (or a directory, for the edge container image).

The bundle is flat: the `edge` extra's dependencies, the edge/ and shared/ sources, run.sh and
interlock.edge.yaml at the root; core/ is never included (the edge must not need it).

    python infra/lambda/package.py                        # Lambda zip, arm64, Python 3.12
    python infra/lambda/package.py --arch x86_64 --python 3.13
    python infra/lambda/package.py --local --stage /app   # this platform, as a directory
    python infra/lambda/package.py --reuse-installed      # copy this environment's packages

Dependencies come from `pip install --target` with Lambda's platform tags (binary wheels only),
or for this platform with --local. --reuse-installed copies the already installed distributions
(the `edge` extra's dependency closure) from the running interpreter's environment instead:
no index access and about a second, which is what the test suite uses; the result only runs
where this environment does.

Bytecode is precompiled (unchecked-hash .pyc: valid whatever timestamps the zip gives the sources)
when an interpreter of the target version is at hand (this one, python3.12 on PATH, or
--bytecode-python), so a cold start does not recompile every module in a read-only /var/task.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SOURCES = ("edge", "shared")
BUNDLE_FILES = {"run.sh": 0o755, "interlock.edge.yaml": 0o644}
# Wheel platform tags the Lambda Python 3.12+ runtimes (Amazon Linux 2023, glibc 2.34) can
# load; pip does not infer older manylinux tags from a newer one, so all are listed.
MANYLINUX = ("manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014")
LAMBDA_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
LAMBDA_ZIP_LIMIT = 50 * 1024 * 1024  # direct upload
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code plus layers
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same inputs give the same zip


def edge_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    with pyproject.open("rb") as handle:
        data = tomllib.load(handle)
    requirements: list[str] = data["project"]["optional-dependencies"]["edge"]
    return requirements


def check_layering(root: Path = ROOT) -> None:
    """Refuse to package an edge that imports core/ (tests/test_layering.py checks it too)."""
    for package in SOURCES:
        for source in sorted((root / package).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                if any(name.split(".")[0] == "core" for name in names):
                    raise SystemExit(
                        f"{source}:{node.lineno}: the edge bundle must not import core"
                    )


def pip_install(target: Path, requirements: list[str], args: argparse.Namespace) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
    ]
    if not args.local:
        for tag in MANYLINUX:
            command += ["--platform", f"{tag}_{LAMBDA_ARCH[args.arch]}"]
        command += [
            "--implementation",
            "cp",
            "--python-version",
            args.python,
            "--only-binary=:all:",
        ]
    subprocess.run([*command, *requirements], check=True)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: unused on Lambda


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions `requirements` need, following extras and markers."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    queue = [Requirement(text) for text in requirements]
    while queue:
        requirement = queue.pop()
        name = _normalize(requirement.name)
        extras = {"", *requirement.extras}
        if all((name, extra) in done for extra in extras):
            continue
        done.update((name, extra) for extra in extras)
        try:
            dist = found.get(name) or metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"--reuse-installed: {requirement.name} is not installed") from None
        found[name] = dist
        for text in dist.requires or []:
            child = Requirement(text)
            marker = child.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
                queue.append(child)
    return sorted(found.values(), key=lambda dist: _normalize(dist.metadata["Name"]))


def copy_installed(target: Path, requirements: list[str]) -> None:
    for dist in installed_closure(requirements):
        for file in dist.files or []:
            relative = PurePosixPath(str(file))
            if relative.parts[0] == ".." or "__pycache__" in relative.parts:
                continue  # console scripts outside site-packages; stale bytecode
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(dist.locate_file(file))), destination)


def copy_sources(target: Path, jwks: Path | None) -> None:
    for package in SOURCES:
        for source in sorted((ROOT / package).rglob("*.py")):
            destination = target / source.relative_to(ROOT)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    for name, mode in BUNDLE_FILES.items():
        shutil.copyfile(HERE / name, target / name)
        (target / name).chmod(mode)
    if jwks is not None:
        shutil.copyfile(jwks, target / "jwks.json")  # public keys only; checked at start-up


def _version_of(interpreter: str) -> str | None:
    try:
        result = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def compile_bytecode(target: Path, python: str, interpreter: str | None) -> str | None:
    """Compile with an interpreter of the target version (bytecode is per version, not per
    platform); returns the one used, or None when there is none."""
    candidates = [interpreter] if interpreter else [sys.executable, shutil.which(f"python{python}")]
    for candidate in candidates:
        if candidate and _version_of(candidate) == python:
            mode = ["--invalidation-mode", "unchecked-hash"]
            command = [candidate, "-m", "compileall", "-q", "-j", "0", *mode, str(target)]
            subprocess.run(command, check=True)
            return candidate
    if interpreter:
        raise SystemExit(f"--bytecode-python {interpreter}: not a Python {python}")
    return None


def walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def write_zip(stage: Path, out: Path) -> tuple[int, int, int]:
    """Zip `stage` reproducibly, keeping the executable bit (Lambda runs run.sh directly)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    count = unzipped = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in walk(stage):
            info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), ZIP_EPOCH)
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            archive.writestr(info, data)
            count += 1
            unzipped += len(data)
    return out.stat().st_size, unzipped, count


def build(args: argparse.Namespace) -> Path:
    check_layering()
    requirements = edge_requirements()
    with tempfile.TemporaryDirectory(prefix="interlock-edge-") as scratch:
        stage = Path(args.stage) if args.stage else Path(scratch) / "bundle"
        if stage.exists() and any(stage.iterdir()):
            raise SystemExit(f"{stage}: not empty")
        stage.mkdir(parents=True, exist_ok=True)
        if args.reuse_installed:
            copy_installed(stage, requirements)
        else:
            pip_install(stage, requirements, args)
        copy_sources(stage, Path(args.jwks) if args.jwks else None)
        python = (
            args.python
            if not (args.local or args.reuse_installed)
            else f"{sys.version_info.major}.{sys.version_info.minor}"
        )
        compiler = compile_bytecode(stage, python, args.bytecode_python)
        note = f"bytecode for Python {python}" if compiler else f"no bytecode for Python {python}"
        if args.stage:
            size = sum(path.stat().st_size for path in walk(stage))
            print(f"edge bundle: {stage} ({size / 1e6:.1f} MB, {note})")
            return stage
        out = Path(args.out)
        zipped, unzipped, count = write_zip(stage, out)
    print(
        f"edge bundle: {out} {zipped / 1e6:.1f} MB zipped ({zipped} bytes), "
        f"{unzipped / 1e6:.1f} MB unzipped, {count} files, {note}"
    )
    if zipped > LAMBDA_ZIP_LIMIT or unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise SystemExit("edge bundle exceeds Lambda's size limits (50 MB zipped, 250 MB unzipped)")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default=str(ROOT / "dist" / "interlock-edge-lambda.zip"))
    parser.add_argument("--stage", help="write the bundle into this (empty) directory, no zip")
    parser.add_argument("--arch", choices=sorted(LAMBDA_ARCH), default="arm64")  # as the template
    parser.add_argument("--python", default="3.12", help="Lambda runtime version (3.12+)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--local", action="store_true", help="pip install for this platform")
    source.add_argument(
        "--reuse-installed",
        action="store_true",
        help="copy the installed dependencies of this environment instead of pip installing",
    )
    parser.add_argument("--jwks", help="bundle this public JWKS file as jwks.json")
    parser.add_argument(
        "--bytecode-python",
        help="interpreter of the target version to precompile with "
        "(default: this one or python<version> on PATH, when the version matches)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    build(parse_args(argv))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
