"""Mutation testing of the pure modules (`make mutants`; docs/testing.md; issue 26).

mutmut makes small edits to one module at a time and runs that module's own unit tests on
each edit; an edit no test notices is a survivor. The modules and their tests are listed in
the root pyproject.toml under [tool.rujuk.mutants], mutmut's own settings under
[tool.mutmut].

mutmut imports the mutated copy from `mutants/src` and takes a test's node id as relative to
where it runs, so each module gets a small work folder, .mutants/<name>/, holding `src` (a
link to its package's source root), `tests` (a link to tests/) and the pyproject.toml mutmut
reads there. Equivalent mutants are marked in the source the tool's own way, a
`# pragma: no mutate` on the line with the reason in a comment beside it; they are counted
by generating the module's mutants once with those pragmas and once without.

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
STRIPPED = "# (pragma stripped)"


@dataclass(frozen=True)
class Module:
    name: str
    source_root: str  # the package's source folder, relative to the repository
    path: str  # the module, relative to source_root
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    module: Module
    mutants: int  # every mutant mutmut makes, the equivalent ones included
    equivalent: int
    killed: int
    survivors: tuple[str, ...]

    @property
    def score(self) -> float:
        candidates = self.mutants - self.equivalent
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
    shutil.rmtree(folder / "mutants", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for link, target in (("src", ROOT / module.source_root), ("tests", ROOT / "tests")):
        path = folder / link
        if path.is_symlink() and path.resolve() != target.resolve():
            path.unlink()
        if not path.is_symlink():
            path.symlink_to(target, target_is_directory=True)
    settings = {
        **mutmut,
        "source_paths": ["src"],
        "only_mutate": [f"src/{module.path}"],
        "pytest_add_cli_args_test_selection": list(module.tests),
    }
    text = _toml_table("tool.mutmut", settings) + _toml_table(
        "tool.pytest.ini_options", pytest_options
    )
    pyproject = folder / "pyproject.toml"
    if not pyproject.exists() or pyproject.read_text() != text:
        pyproject.write_text(text)
    return folder


def _toml_table(name: str, values: dict[str, Any]) -> str:
    # json renders strings, numbers, booleans and lists of them the way TOML reads them.
    lines = [f"[{name}]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n\n"


def run(module: Module, folder: Path, children: int) -> None:
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


def statuses(folder: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def equivalents(folder: Path, module: Module) -> tuple[int, list[str]]:
    """(every mutant mutmut makes of the module, the ones its pragmas mark equivalent)."""
    import libcst
    from mutmut.configuration import reset_config
    from mutmut.mutation.file_mutation import create_mutations, mutate_file_contents

    path = f"src/{module.path}"
    here = Path.cwd()
    os.chdir(folder)  # mutmut reads its settings from the current folder
    try:
        reset_config()
        code = (folder / path).read_text()
        stripped = PRAGMA.sub(STRIPPED, code)
        every = len(mutate_file_contents(path, stripped).mutant_names)
        render = libcst.Module(body=[]).code_for_node

        def described(source: str) -> list[str]:
            # The marker is put back, so a node around a pragma reads the same in both sources.
            return [
                " ".join(
                    f"{render(m.original_node)}  ->  {render(m.mutated_node)}".split()
                ).replace(STRIPPED, "# pragma: no mutate")
                for m in create_mutations(path, source)[1]
            ]

        marked = described(stripped)
        for kept in described(code):
            marked.remove(kept)
    finally:
        os.chdir(here)
    return every, marked


def show(folder: Path, name: str) -> str:
    return subprocess.run(
        [str(MUTMUT), "show", name], cwd=folder, capture_output=True, text=True, check=False
    ).stdout


def measure(module: Module, folder: Path) -> Result:
    found = statuses(folder)
    every, marked = equivalents(folder, module)
    if len(found) != every - len(marked):
        raise SystemExit(
            f"{module.name}: mutmut tested {len(found)} mutants, {every - len(marked)} expected"
        )
    killed = sum(1 for status in found.values() if status in KILLED)
    survivors = tuple(sorted(name for name, status in found.items() if status not in KILLED))
    return Result(module, every, len(marked), killed, survivors)


def table(results: list[Result]) -> str:
    rows = [
        "| module | mutants | killed | equivalent | survived | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r.module.source_root}/{r.module.path} | {r.mutants} | {r.killed} | "
            f"{r.equivalent} | {len(r.survivors)} | {r.score:.1%} |"
        )
    return "\n".join(rows)


def main() -> int:
    modules, mutmut, pytest_options = load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="modules to run (default: every one)")
    parser.add_argument("--list", action="store_true", help="print the modules' names")
    parser.add_argument(
        "--equivalent", action="store_true", help="print the mutants marked equivalent, no run"
    )
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.list:
        print("\n".join(modules))
        return 0
    unknown = sorted(set(args.names) - set(modules))
    if unknown:
        parser.error(f"no such module: {', '.join(unknown)} (see --list)")
    if args.equivalent:
        for name in args.names or list(modules):
            folder = prepare(modules[name], mutmut, pytest_options)
            _, marked = equivalents(folder, modules[name])
            print(f"{name}: {len(marked)} marked equivalent", *marked, sep="\n    ")
        return 0
    results = []
    for name in args.names or list(modules):
        module = modules[name]
        folder = prepare(module, mutmut, pytest_options)
        print(f"{name}: mutating {module.source_root}/{module.path}", flush=True)
        run(module, folder, args.children)
        result = measure(module, folder)
        results.append(result)
        for survivor in result.survivors:
            print(show(folder, survivor))
        print(f"{name}: {result.killed} killed of {result.mutants - result.equivalent}", flush=True)
    print(table(results))
    below = [r.module.name for r in results if r.score < TARGET]
    if below:
        print(f"under {TARGET:.0%} of non-equivalent mutants killed: {', '.join(below)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
