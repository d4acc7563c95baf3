"""Reading an SOP document: YAML to a validated ``Sop``, every problem reported with its line.

The YAML is composed once to nodes (which keep their line numbers) and once to data; the
checks (``routing.sop.checks``) find what is wrong in the data, by location, and this module
turns each location into the line and the readable path a writer of the SOP can find.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from routing.sop.checks import (
    Location,
    Problem,
    cross_check_problems,
    duplicate_keys,
    schema_problems,
)
from routing.sop.model import Sop

# What an SOP's examples expect and does not follow: ``routing.sop.examples.example_problems``.
# It is passed in, not imported: the runner uses ``routing.decide``, which imports this package.
ExampleRunner = Callable[[Sop], list[Problem]]


@dataclass(frozen=True)
class SopIssue:
    """One thing wrong with an SOP document, where it is, and why."""

    label: str
    where: str | None
    line: int | None
    reason: str

    def __str__(self) -> str:
        place = f", {self.where}" if self.where else ""
        line = f" (line {self.line})" if self.line is not None else ""
        return f"{self.label}{place}{line}: {self.reason}"


class SopError(ValueError):
    """An SOP that cannot be used; the message lists every issue, one a line."""

    def __init__(self, issues: list[SopIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


def load_sop(source: Path | str, *, run_examples: ExampleRunner | None = None) -> Sop:
    """Load and validate an SOP from a file, or from YAML text.

    A ``Path`` is read; so is a one-line ``str`` ending in ``.yaml``/``.yml``. Any other
    ``str`` is the YAML document itself. Raises ``SopError`` listing every issue found.
    """
    if isinstance(source, Path) or ("\n" not in source and source.endswith((".yaml", ".yml"))):
        path = Path(source)
        text = path.read_text(encoding="utf-8")
        return parse_sop(text, origin=path.name, run_examples=run_examples)
    return parse_sop(source, origin="<text>", run_examples=run_examples)


def parse_sop(
    text: str, *, origin: str = "<text>", run_examples: ExampleRunner | None = None
) -> Sop:
    """Validate an SOP document; given ``run_examples``, its examples must pass too.

    Raises ``SopError`` listing every issue, each with its line: first what is wrong with the
    document itself, and only when nothing is, the examples that fail.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        issue = SopIssue(f"SOP {origin}", None, line, f"not valid YAML: {exc.problem}")
        raise SopError([issue]) from exc
    except yaml.YAMLError as exc:
        raise SopError([SopIssue(f"SOP {origin}", None, None, f"not valid YAML: {exc}")]) from exc
    except RecursionError as exc:  # nesting deeper than the parser's stack
        issue = SopIssue(f"SOP {origin}", None, None, "not valid YAML: nested too deeply")
        raise SopError([issue]) from exc
    except (ValueError, OverflowError) as exc:  # a scalar that reads as a date and is none
        line = _unreadable_scalar_line(root)
        issue = SopIssue(f"SOP {origin}", None, line, f"not valid YAML: {exc}")
        raise SopError([issue]) from exc
    if not isinstance(data, dict) or root is None:
        raise SopError([SopIssue(f"SOP {origin}", None, 1, "the document must be a mapping")])
    document = _Document(root, data, _label(data, origin))
    problems = [*duplicate_keys(root), *schema_problems(data), *cross_check_problems(data)]
    if problems:
        raise SopError(document.issues(problems))
    sop = Sop.model_validate(data)
    failures = run_examples(sop) if run_examples is not None else []
    if failures:
        raise SopError(document.issues(failures))
    return sop


def _unreadable_scalar_line(node: yaml.Node | None) -> int | None:
    """The line of the first scalar YAML cannot construct (``2026-02-30``), if any."""
    if isinstance(node, yaml.ScalarNode):
        try:
            yaml.SafeLoader("").construct_object(node, deep=True)
        except (ValueError, OverflowError):
            return int(node.start_mark.line) + 1
        return None
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    for child in children:
        line = _unreadable_scalar_line(child)
        if line is not None:
            return line
    return None


@dataclass
class SopLibrary:
    """The SOPs in force, by district code, and the files refused at load with their reasons."""

    sops: dict[str, Sop] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  # district -> of its file's text
    texts: dict[str, str] = field(default_factory=dict)  # district -> its file's text

    def for_district(self, district_code: str) -> Sop | None:
        return self.sops.get(district_code)


def load_sop_folder(folder: Path, *, run_examples: ExampleRunner | None = None) -> SopLibrary:
    """Every ``<district>.yaml`` in the folder; a broken file is refused, the others stay."""
    library = SopLibrary()
    for path in sorted(folder.glob("*.y*ml")):
        text = path.read_text(encoding="utf-8")
        try:
            sop = parse_sop(text, origin=path.name, run_examples=run_examples)
        except SopError as exc:
            library.refused[path.name] = str(exc)
            continue
        if sop.district_code != path.stem:
            library.refused[path.name] = (
                f"{sop.label}: file {path.name} holds district {sop.district_code}; "
                f"name it {sop.district_code}.yaml"
            )
        elif sop.district_code in library.sops:
            library.refused[path.name] = f"{sop.label}: a second SOP for the same district"
        else:
            library.sops[sop.district_code] = sop
            library.sha256[sop.district_code] = hashlib.sha256(text.encode()).hexdigest()
            library.texts[sop.district_code] = text
    return library


@dataclass
class _Document:
    root: yaml.Node
    data: dict[str, Any]
    label: str

    def issues(self, problems: list[Problem]) -> list[SopIssue]:
        found: dict[tuple[str | None, int, str], None] = {}
        for problem in problems:
            element = self._element(problem.location)
            skip = 0 if element is None else 2
            line, path = _resolve(self.root, problem.location, skip=skip, missing=problem.missing)
            reason = problem.reason
            if "{path}" in reason:
                reason = reason.replace("{path}", path or str(problem.location[-1]))
            elif path and problem.show_path:
                reason = f"{path}: {reason}"
            found.setdefault((element, line, reason), None)
        ordered = sorted(found, key=lambda key: (key[1], key[2]))
        return [SopIssue(self.label, where, line, reason) for where, line, reason in ordered]

    def _element(self, location: Location) -> str | None:
        """'rule <id>', 'agency <id>' or 'example <id>' when the location is inside one."""
        kinds = {"rules": "rule", "directory": "agency", "examples": "example"}
        kind = kinds.get(str(location[0])) if location else None
        if kind is None or len(location) < 2 or not isinstance(location[1], int):
            return None
        section, index = str(location[0]), location[1]
        items = self.data.get(section)
        item = items[index] if isinstance(items, list) and index < len(items) else None
        name = item.get("id") if isinstance(item, dict) else None
        return f"{kind} {name}" if isinstance(name, str) else f"{section}[{index}]"


def _label(data: dict[str, Any], origin: str) -> str:
    district, version = data.get("district_code"), data.get("version")
    if isinstance(district, str | int) and isinstance(version, int):
        return f"SOP {district} v{version}"
    return f"SOP {district}" if isinstance(district, str | int) else f"SOP {origin}"


def _resolve(root: yaml.Node, location: Location, *, skip: int, missing: bool) -> tuple[int, str]:
    """The line a location points at, and its readable path after the first ``skip`` parts.

    Parts that are not in the document (pydantic's union tags like ``literal['all']``) are
    left out; a missing key is named, and its parent gives the line.
    """
    node, line_node, path = root, root, ""
    for position, part in enumerate(location):
        found = _child(node, part)
        if found is not None:
            line_node, node = found
        elif not (missing and position == len(location) - 1):
            continue
        if position >= skip:
            path = _join(path, part)
    return line_node.start_mark.line + 1, path


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node whose line to show, the node to descend into) for a key or an index."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item
    return None


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)
