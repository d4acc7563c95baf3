"""Mutation testing of the pure modules (`make mutants`; docs/testing.md; issue 26).

mutmut makes small edits to one module at a time and runs that module's own unit tests on
each edit; an edit no test notices is a survivor. The modules and their tests are listed in
the root pyproject.toml under [tool.rujuk.mutants], mutmut's own settings under
[tool.mutmut].

mutmut imports the mutated copy from `mutants/src` and takes a test's node id as relative to
where it runs, so each module gets a work folder of its own, .mutants/<name>/, holding `src`
(a copy of its package's source root), `tests` (a link to tests/) and the pyproject.toml
mutmut reads there.

Equivalent mutants (no test could notice them: the program behaves the same) are marked in
the source the tool's own way, `# pragma: no mutate` on the line, with the reason in a
comment beside it. mutmut would skip such a line whole, and with it any other mutant of that
line; so the copy mutated here has the pragmas turned into plain marks, every mutant is run,
and a survivor counts as equivalent only when the line it changes carries a mark. Killed
mutants on a marked line are listed too, for whoever checks the marks: a line can hold one
equivalent mutant beside others the tests kill.

    python tests/mutants.py                 # every module
    python tests/mutants.py decide chain    # some
    python tests/mutants.py --list          # the modules' names
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutants"
MUTMUT = Path(sys.executable).parent / "mutmut"
TARGET = 0.95
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
PRAGMA = re.compile(r"#\s*pragma:\s*no mutate")
MARK = "# (marked equivalent)"


@dataclass(frozen=True)
class Module:
    name: str
    source_root: str  # the package's source folder, relative to the repository
    path: str  # the module, relative to source_root
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    module: Module
    mutants: int
    killed: int
    equivalent: tuple[str, ...]  # diffs of the survivors whose line is marked equivalent
    survivors: tuple[str, ...]  # diffs of the others
    killed_on_marks: tuple[str, ...]  # diffs of killed mutants on a line marked equivalent

    @property
    def score(self) -> float:
        candidates = self.mutants - len(self.equivalent)
        return self.killed / candidates if candidates else 1.0


def load() -> tuple[dict[str, Module], dict[str, Any], dict[str, Any]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = pyproject["tool"]
    modules = {
        name: Module(name, entry["source_root"], entry["path"], tuple(entry["tests"]))
        for name, entry in tool["rujuk"]["mutants"].items()
    }
    return modules, tool["mutmut"], tool["pytest"]["ini_options"]


def prepare(module: Module, mutmut: dict[str, Any], pytest_options: dict[str, Any]) -> Path:
    folder = WORK / module.name
    # Every run starts afresh: no verdict is carried over from an earlier run's cache.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(
        ROOT / module.source_root,
        folder / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    target = folder / "src" / module.path
    target.write_text(PRAGMA.sub(MARK, target.read_text()))
    (folder / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    settings = {
        **mutmut,
        "source_paths": ["src"],
        "only_mutate": [f"src/{module.path}"],
        "pytest_add_cli_args_test_selection": list(module.tests),
    }
    (folder / "pyproject.toml").write_text(
        _toml_table("tool.mutmut", settings)
        + _toml_table("tool.pytest.ini_options", pytest_options)
    )
    return folder


def _toml_table(name: str, values: dict[str, Any]) -> str:
    # json renders strings, numbers, booleans and lists of them the way TOML reads them.
    lines = [f"[{name}]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n\n"


def mutmut_run(module: Module, folder: Path, children: int) -> None:
    log = folder / "run.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(children)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"mutmut failed on {module.name} (exit {done.returncode}):\n{tail}")


def outcomes(folder: Path) -> dict[str, tuple[str, str]]:
    """Mutant name -> (status, its change), read from mutmut's result files in `folder`: the
    change is the mutant's name, then the lines it takes out and puts in."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    here = Path.cwd()
    os.chdir(folder)  # mutmut reads its settings and results from the current folder
    try:
        reset_config()
        found: dict[str, tuple[str, str]] = {}
        for path in walk_mutatable_files():
            data = SourceFileMutationData(path=path)
            data.load()
            for name, exit_code in data.exit_code_by_key.items():
                lines = get_diff_for_mutant(name, path=path).splitlines()
                changed = [
                    line
                    for line in lines
                    if line[:1] in "-+" and not line.startswith(("---", "+++"))
                ]
                found[name] = (status_by_exit_code[exit_code], "\n".join([name, *changed]))
    finally:
        os.chdir(here)
    return found


def marked(change: str) -> bool:
    return any(line.startswith("-") and MARK in line for line in change.splitlines())


def measure(module: Module, folder: Path) -> Result:
    found = outcomes(folder)
    if not found:
        raise SystemExit(f"{module.name}: mutmut made no mutants (see {folder / 'run.log'})")
    survived = [change for status, change in found.values() if status not in KILLED]
    killed = [change for status, change in found.values() if status in KILLED]
    return Result(
        module,
        mutants=len(found),
        killed=len(killed),
        equivalent=tuple(c for c in survived if marked(c)),
        survivors=tuple(c for c in survived if not marked(c)),
        killed_on_marks=tuple(c for c in killed if marked(c)),
    )


def report(result: Result) -> None:
    name = result.module.name
    for title, changes in (
        ("survived", result.survivors),
        ("equivalent (marked, survived)", result.equivalent),
        ("killed on a marked line", result.killed_on_marks),
    ):
        for change in changes:
            print(f"{name}: {title}: {change}\n")
    print(f"{name}: {result.killed} killed of {result.mutants - len(result.equivalent)}")


def table(results: list[Result]) -> str:
    rows = [
        "| module | mutants | killed | equivalent | survived | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r.module.source_root}/{r.module.path} | {r.mutants} | {r.killed} | "
            f"{len(r.equivalent)} | {len(r.survivors)} | {r.score:.1%} |"
        )
    return "\n".join(rows)


def main() -> int:
    modules, mutmut, pytest_options = load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="modules to run (default: every one)")
    parser.add_argument("--list", action="store_true", help="print the modules' names")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.list:
        print("\n".join(modules))
        return 0
    unknown = sorted(set(args.names) - set(modules))
    if unknown:
        parser.error(f"no such module: {', '.join(unknown)} (see --list)")
    results = []
    for name in args.names or list(modules):
        module = modules[name]
        print(f"{name}: mutating {module.source_root}/{module.path}", flush=True)
        folder = prepare(module, mutmut, pytest_options)
        mutmut_run(module, folder, args.children)
        results.append(measure(module, folder))
        report(results[-1])
    print(table(results))
    failing = [r.module.name for r in results if r.score < TARGET]
    if failing:
        print(f"under {TARGET:.0%} of non-equivalent mutants killed: {', '.join(failing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
