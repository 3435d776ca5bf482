"""Finding and reading interlock.yaml: shared by the full loader (shared/config.py, the core and
the CLI) and the edge's own loader (shared/config_edge.py), so both tiers pick the same file.

Errors point into the file. A YAML syntax error names the file, line and column the parser
stopped at; a key given twice in one mapping is refused (YAML would keep the last one
silently); and `located` adds the line of the key a ConfigError names (`providers.x.options`),
found in the file's node tree, so a newcomer goes straight to the line at fault.

yaml is imported when a file is parsed, not with this module: an edge started without a file
(embedded defaults, a Lambda configured by its environment) never pays for its import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.configparse import ConfigError

if TYPE_CHECKING:
    import yaml

PathLike = str | os.PathLike[str]
# The key path a ConfigError starts with ("providers.p.options.region: required"). Patterns
# for the error path only: compiled (and cached by `re`) when an error is first located.
_LEADING_PATH = r"^([^:\s]+):"
# Where a key path may be cut to find its nearest enclosing key: before "." or "[".
_CUT = r"[.\[]"


def read_config_file(path: PathLike | None, env: dict[str, str]) -> tuple[Any, str] | None:
    """The parsed YAML and its file name, from `path`, $INTERLOCK_CONFIG or ./interlock.yaml;
    None when there is no file at all (each tier then has its own embedded defaults)."""
    chosen = path or env.get("INTERLOCK_CONFIG")
    if chosen is None and Path("interlock.yaml").is_file():
        chosen = "interlock.yaml"
    if chosen is None:
        return None
    file = Path(chosen)
    raw, _ = _parse(file)
    return (raw if raw is not None else {}), str(file)


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not valid YAML (the file is not UTF-8 text)") from None


def _parse(file: Path) -> tuple[Any, dict[str, int]]:
    """The document and where each key path is written (1-based line numbers). libyaml's
    parser when PyYAML has it: a cold edge parses its file in well under a millisecond instead
    of about ten. A document it refuses is parsed again by the pure-Python parser, whose
    errors (line, column, wording) are the ones reported, so only valid files take the fast
    path and every error reads as it always has."""
    import yaml

    text = _read(file)
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return _compose(fast(text), file)
        except yaml.YAMLError:
            pass
    try:
        return _compose(yaml.SafeLoader(text), file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc})") from None


def _compose(loader: yaml.SafeLoader | yaml.CSafeLoader, file: Path) -> tuple[Any, dict[str, int]]:
    """Runs `loader` over its text: the node tree, indexed by key path (a key given twice is a
    ConfigError), then the document built from it."""
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _index(node, "", lines, file)
        return (loader.construct_document(node) if node is not None else None), lines
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: str, lines: dict[str, int], file: Path) -> None:
    """Record each key path's line under `path`; a key given twice is an error."""
    import yaml  # loaded by _parse, which calls this: a dictionary look-up

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{file}:{line}: {child}: given twice (first on line {seen[key]}); "
                    "YAML would keep only the last"
                )
            seen[key] = lines[child] = line
            _index(value_node, child, lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines, file)


def line_of(key_path: str, lines: dict[str, int]) -> int | None:
    """The line of `key_path`, or of the nearest key that encloses it (an unknown key's
    section, a missing key's parent); None when not even its section is in the file."""
    key_path = key_path.removeprefix("config.")  # top-level keys are reported as config.<key>
    cuts = [m.start() for m in re.finditer(_CUT, key_path)]
    for end in (len(key_path), *reversed(cuts)):
        line = lines.get(key_path[:end])
        if line is not None:
            return line
    return None


def located(error: ConfigError, source: str) -> ConfigError:
    """The error with the file and line of the key it names appended, when `source` is a
    file that has that key (or its section); else the error as it was. Only on the error
    path: the file is read again, never while the config is loaded."""
    message = str(error)
    found = re.match(_LEADING_PATH, message)
    file = Path(source)
    if found is None or not file.is_file() or f"({source}, line " in message:
        return error
    try:
        _, lines = _parse(file)
    except ConfigError:
        return error
    line = line_of(found.group(1), lines)
    return error if line is None else ConfigError(f"{message} ({source}, line {line})")


@contextmanager
def errors_located(source: str) -> Iterator[None]:
    """Re-raises a ConfigError from the block with its place in `source` (see `located`)."""
    try:
        yield
    except ConfigError as error:
        raise located(error, source) from None
