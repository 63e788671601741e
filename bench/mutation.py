"""Mutation testing of the pure modules with mutmut: does breaking the code fail a test?

Each group mutates its modules and runs only the tests that exercise them, in a copy of
the committed tree (``git archive HEAD``, or ``--tree REV``) under a temporary folder,
so the working tree is never touched. mutmut writes each mutant (an operator flipped, a
constant changed, an argument dropped, ...) and runs the tests that cover the mutated
function; a mutant that no test fails "survived". The score is killed / (killed +
survived + timeouts + mutants no test reaches).

Run: .venv/bin/python bench/mutation.py [GROUP ...] [--max-children 2] [--json out.json]
Groups: see GROUPS (default: all). Needs mutmut (dev extras) and, for the groups whose
tests use them, the test services (ERSS_TEST_DATABASE_URL / ERSS_TEST_REDIS_URL).
Exit status 1 when a group scores under --target (default 85 %).
Figures and the surviving mutants, each killed or explained: docs/mutation.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the tests that must notice. ``a|b`` names a module
    by where it is now and where it was (dispatch/ is moving into dispatch/core/): the
    first that exists is mutated."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]
    # Extra pytest arguments: the parsers' hypothesis fuzz tests (NOT_FUZZ, a few
    # hundred examples each) are left out, for time; they check that nothing but the
    # parser's own error escapes, which the example-based tests also reach.
    pytest_args: tuple[str, ...] = ()


# The parsers' example-based tests (tests/test_aml_hmac.py goes through a live server,
# and is left out).
AML_TESTS = (
    "tests/test_aml.py",
    "tests/test_aml_forms_https.py",
    "tests/test_aml_forms_query.py",
    "tests/test_aml_sms.py",
)
PIDF_LO_TESTS = (
    "tests/test_pidf_lo.py",
    "tests/test_pidf_lo_document.py",
    "tests/test_pidf_lo_shapes_polygons.py",
    "tests/test_pidf_lo_shapes_radii.py",
    "tests/test_pidf_lo_shapes_notation.py",
)
CORE_TESTS = (
    "tests/test_core_dispatch.py",
    "tests/test_core_explain.py",
    "tests/test_core_place.py",
    "tests/test_core_plans.py",
    "tests/test_core_rank.py",
    "tests/test_core_ranking.py",
    "tests/test_core_why.py",
)

# The parsers' hypothesis fuzz tests, by the words their four names share
# (test_no_text_makes_the_sms_parser_raise..., test_no_body_makes_the_https_parsers...,
# test_no_input_makes_the_parser..., test_no_circle_content_makes_the_parser_raise).
NOT_FUZZ = ("-k", "not makes_the")

GROUPS = {
    "lifecycle": Group(
        ("dispatch/core/lifecycle.py|dispatch/lifecycle.py",),
        (
            "tests/test_lifecycle_stateful.py",
            "tests/test_core_lifecycle.py",
        ),
        # The stateful run against PostgreSQL covers every function and takes seconds.
        ("-k", "not random_commands"),
    ),
    "signing": Group(
        ("gateways/signing.py",),
        ("tests/test_gateway_security.py",),
    ),
    "geo": Group(
        ("geo/distance.py", "geo/points.py", "geo/location.py", "geo/zones.py"),
        ("tests/test_geo.py", "tests/test_aml.py", "tests/test_pidf_lo.py"),
        NOT_FUZZ,
    ),
    "ranking": Group(
        ("dispatch/core/rank.py|dispatch/engine.py",),
        # tests/test_simulation.py (18 s a run) is left out for time: the core tests
        # and test_geo.py's closest-idle cases exercise every function.
        (*CORE_TESTS, "tests/test_geo.py"),
    ),
    "correlation": Group(
        ("dispatch/core/correlate.py|dispatch/correlate.py",),
        (
            "tests/test_core_dispatch.py",
            "tests/test_correlation.py::test_which_location_is_better",
            "tests/test_correlation.py::test_a_phone_number_is_keyed_by_its_last_ten_digits",
            "tests/test_correlation.py::test_which_keys_and_types_correlate",
        ),
    ),
    "aml": Group(
        (
            "gateways/aml/message.py",
            "gateways/aml/fields.py",
            "gateways/aml/sms.py",
            "gateways/aml/https.py",
            "gateways/aml/query.py",
        ),
        AML_TESTS,
        NOT_FUZZ,
    ),
    "pidf_lo": Group(
        (
            "gateways/telecom/pidf_lo.py",
            "gateways/telecom/pidf_lo_xml.py",
            "gateways/telecom/pidf_lo_geopriv.py",
            "gateways/telecom/pidf_lo_shapes.py",
        ),
        PIDF_LO_TESTS,
        NOT_FUZZ,
    ),
    # The rest of the pure dispatch core: what a decision is fed (facts), where a report
    # lies (place), response plans (plans), the decision itself (decide), and why no unit
    # could go (explain).
    "core": Group(
        (
            "dispatch/core/facts.py",
            "dispatch/core/place.py",
            "dispatch/core/plans.py",
            "dispatch/core/decide.py",
            "dispatch/core/explain.py",
        ),
        CORE_TESTS,
    ),
}


def _config(modules: list[str], group: Group) -> str:
    """The [tool.mutmut] table for one group (appended to the copy's pyproject.toml)."""
    quoted = ", ".join
    args = ["-p", "no:randomly", "-p", "no:cacheprovider", "-q", *group.pytest_args]
    return (
        "\n[tool.mutmut]\n"
        f"source_paths = [{quoted(json.dumps(m) for m in modules)}]\n"
        f"pytest_add_cli_args_test_selection = [{quoted(json.dumps(t) for t in group.tests)}]\n"
        f"pytest_add_cli_args = [{quoted(json.dumps(a) for a in args)}]\n"
        'also_copy = ["tests", "config", "dispatch", "gateways", "geo"]\n'
    )


def _mutmut(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )


def _copy(folder: Path, tree: str) -> None:
    """A committed tree (a revision: HEAD, a commit), or the working tree as it is
    (``worktree``)."""
    if tree != "worktree":
        archive = subprocess.run(
            ["git", "archive", tree], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        return
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = folder / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


def run_group(
    name: str,
    group: Group,
    max_children: int,
    tree: str,
    diffs: bool = True,
    keep: Path | None = None,
) -> dict[str, object]:
    """Mutate one group in a fresh copy of the tree; returns its counts and survivors."""
    # --keep leaves the copy (and mutmut's results) behind, to look at one mutant with
    # `mutmut show NAME` or re-run it with `mutmut run NAME` in that folder.
    prefix = f"erss-mutation-{name}-"
    with (
        tempfile.TemporaryDirectory(prefix=prefix)
        if keep is None
        else contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix, dir=keep))
    ) as tmp:
        folder = Path(tmp)
        _copy(folder, tree)
        modules = []
        for choice in group.modules:
            found = [m for m in choice.split("|") if (folder / m).is_file()]
            if not found:
                return {"group": name, "error": f"not in the {tree} tree: {choice}"}
            modules.append(found[0])
        # A test file not written yet in this tree is left out, not an error.
        tests = tuple(t for t in group.tests if (folder / t.split("::")[0]).is_file())
        group = dataclasses.replace(group, tests=tests)
        with open(folder / "pyproject.toml", "a", encoding="utf-8") as pyproject:
            pyproject.write(_config(modules, group))
        done = _mutmut(folder, "run", "--max-children", str(max_children))
        if done.returncode != 0:
            return {"group": name, "error": (done.stdout + done.stderr)[-2000:]}
        _mutmut(folder, "export-cicd-stats")
        stats = json.loads((folder / "mutants" / "mutmut-cicd-stats.json").read_text())
        survivors = []
        for line in _mutmut(folder, "results").stdout.splitlines():
            mutant, _, status = line.strip().rpartition(": ")
            if mutant and status in ("survived", "timeout", "no tests"):
                # One `mutmut show` per survivor: about a second each.
                diff = _mutmut(folder, "show", mutant).stdout if diffs else ""
                changed = [d for d in diff.splitlines() if d[:1] in ("-", "+")]
                changed = [d for d in changed if not d.startswith(("---", "+++"))]
                survivors.append({"mutant": mutant, "status": status, "diff": changed})
        per_module = _per_module(_mutmut(folder, "results", "--all", "true").stdout)
        killed = stats["killed"]
        counted = killed + stats["survived"] + stats["timeout"] + stats["no_tests"]
        return {
            "group": name,
            "modules": modules,
            "tests": list(tests),
            **stats,
            "score": killed / counted if counted else None,
            "per_module": per_module,
            "survivors": survivors,
        }


def _per_module(listing: str) -> dict[str, dict[str, int]]:
    """Counts by module and status, from ``mutmut results --all`` lines
    (``pkg.module.x_function__mutmut_3: killed``)."""
    counts: dict[str, dict[str, int]] = {}
    for line in listing.splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if not mutant:
            continue
        parts = mutant.split(".")
        at = next((i for i, p in enumerate(parts) if p.startswith(("x_", "x\u01c1"))), None)
        module = ".".join(parts[:at]) if at else mutant
        by_status = counts.setdefault(module, {})
        by_status[status] = by_status.get(status, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", choices=list(GROUPS), default=[])
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--keep", type=Path, help="leave each group's copy in this folder")
    parser.add_argument(
        "--no-diffs", action="store_true", help="list survivors by name only (faster)"
    )
    parser.add_argument(
        "--tree",
        default="HEAD",
        help="a revision to mutate (default HEAD), or 'worktree' for the working tree",
    )
    args = parser.parse_args()
    results = []
    for name in args.groups or list(GROUPS):
        result = run_group(
            name, GROUPS[name], args.max_children, args.tree, not args.no_diffs, args.keep
        )
        results.append(result)
        if "error" in result:
            print(f"{name:12} ERROR {result['error']}", flush=True)
            continue
        score = result["score"]
        assert score is None or isinstance(score, float)
        print(
            f"{name:12} killed {result['killed']:4} of {result['total']:4}"
            f"  survived {result['survived']:3}  timeout {result['timeout']:2}"
            f"  no tests {result['no_tests']:3}"
            f"  score {'-' if score is None else f'{100 * score:.1f} %'}",
            flush=True,
        )
        for module, by_status in result["per_module"].items():  # type: ignore[attr-defined]
            done = sum(n for st, n in by_status.items() if st != "skipped")
            share = by_status.get("killed", 0) / done if done else 0.0
            print(f"    {module:40} {100 * share:5.1f} %  {by_status}")
        for survivor in result["survivors"]:  # type: ignore[attr-defined]
            print(f"    {survivor['status']}: {survivor['mutant']}")
            for line in survivor["diff"]:
                print(f"        {line}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    low = [r for r in results if "error" in r or (r["score"] or 0) < args.target]
    if low:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
