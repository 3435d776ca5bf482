"""The source tree explains itself and carries no dead code (issue 9, findings 10 and 11).

A newcomer has only the repository: a comment that cites a document must cite one that is in
it, and a pointer to a README section must name a section that exists. Definitions nobody
reads and loggers nobody logs to are noise a reader has to rule out, so they are refused.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("edge", "core", "shared")
CODE = (*PRODUCT, "tests", "infra")
# Called by a framework rather than by our code: uvicorn's protocol hook, the OpenTelemetry
# SDK's id generator (core/observe/otel.py).
FRAMEWORK_HOOKS = frozenset({"send_400_response", "generate_span_id"})


def _tracked() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listing.stdout.splitlines() if (ROOT / name).is_file()]


def _python(tiers: tuple[str, ...]) -> list[Path]:
    """The Python files under `tiers`, except this one (its patterns would match themselves)."""
    return [
        ROOT / name
        for name in _tracked()
        if name.endswith(".py") and name.startswith(tiers) and ROOT / name != Path(__file__)
    ]


def _mentions(pattern: str) -> set[tuple[str, str]]:
    """(file, match) for every match of `pattern` in the code, tests and infra scripts."""
    return {
        (str(path.relative_to(ROOT)), match)
        for path in _python(CODE)
        for match in re.findall(pattern, path.read_text())
    }


def test_cited_documents_are_in_the_repository() -> None:
    present = {Path(name).name for name in _tracked()}
    cited = _mentions(r"\b[A-Z][A-Za-z0-9_-]*\.md\b")
    assert cited, "the scan found nothing: README.md is cited in tests"
    assert sorted(c for c in cited if c[1] not in present) == []


def test_readme_section_pointers_name_real_sections() -> None:
    headings = set(re.findall(r"^#+ (.+?)\s*$", (ROOT / "README.md").read_text(), re.M))
    pointers = _mentions(r'README "([^"]+)"')
    assert pointers, "the scan found nothing: the core points at README sections"
    assert sorted(p for p in pointers if p[1] not in headings) == []


def _module_loggers(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "getLogger"
        ):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def test_every_module_logger_is_logged_to() -> None:
    unused = []
    for path in _python(PRODUCT):
        source = path.read_text()
        for name in _module_loggers(ast.parse(source)):
            if len(re.findall(rf"\b{name}\b", source)) < 2:
                unused.append(f"{path.relative_to(ROOT)}: {name}")
    assert unused == []


def _definitions(tree: ast.Module) -> list[str]:
    """Top-level functions, classes and names, and the methods and fields of classes."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.append(member.name)
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    names.append(member.target.id)
    return [n for n in names if not (n.startswith("__") and n.endswith("__"))]


def test_every_definition_is_used_somewhere() -> None:
    """A name defined in product code and written nowhere else in the repository (product,
    tests, infra, build files) is dead: nothing can call or read it."""
    texts = [path.read_text() for path in _python(CODE)]
    texts += [(ROOT / name).read_text() for name in ("pyproject.toml", "Makefile")]
    corpus = "\n".join(texts)
    counts: dict[str, int] = {}
    for word in re.findall(r"\w+", corpus):
        counts[word] = counts.get(word, 0) + 1
    dead = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python(PRODUCT)
        for name in _definitions(ast.parse(path.read_text()))
        if counts.get(name, 0) < 2 and name not in FRAMEWORK_HOOKS
    ]
    assert dead == []


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_small() -> None:
    """The product's modules stay under 400 lines and its functions under 60 (the developers'
    guide): past that a module holds more than one responsibility, a function more than one
    step, and they are split rather than let grow."""
    large: list[str] = []
    for path in _python(PRODUCT):
        source = path.read_text()
        name = str(path.relative_to(ROOT))
        if source.count("\n") > MAX_MODULE_LINES:
            large.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    large.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert large == []
