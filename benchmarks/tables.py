# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The results tables of README.md and bundle/docs/README.md, generated from ``benchmarks/results/*.json``.

Each generated table sits in a marked region of a document::

    <!-- table:real_data -->
    ...generated, do not edit by hand...
    <!-- /table -->

and is written by the benchmark's own formatter (one home per table):

* ``real_data``: ``benchmarks/results/real_data.json`` through :func:`real_data.format_tables` (the DIADEM OP
  stacks, bright and weak: classical, synthetic-only and leave-one-stack-out rows);
* ``real_data_off_gold``: the same file through :func:`real_data.format_off_gold` (where each row's nodes off the
  gold lie: the brightness of the recorded stack under them);
* ``ablation``: ``benchmarks/results/ablation.json`` through :func:`ablation.format_tables` (the four variants on
  the synthetic and DIADEM test sets; the per-seed wall minutes stay in the prose).

Tables whose numbers are in no JSON file (benchmarks that only print) are not marked and stay as written.

Usage::

    python benchmarks/tables.py            # rewrite every marked region of both documents from the JSON files
    python benchmarks/tables.py --check    # exit 1 and name the stale regions when a document is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablation  # noqa: E402
import real_data  # noqa: E402

from neurolink_monai.io import atomic_write_text  # noqa: E402

__all__ = ["DOCUMENTS", "TABLES", "render", "stale_regions", "update_document", "main"]

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = (REPO / "README.md", REPO / "bundle" / "docs" / "README.md")
REGION = re.compile(r"(?P<start><!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(?P<end><!-- /table -->)", re.S)


def _real_data_records(results: Path) -> list[dict]:
    records = real_data.load_records(results)
    if not records:
        raise ValueError(f"{results}: no records (run benchmarks/real_data.py first).")
    return records


def _real_data_table(results: Path = real_data.DEFAULT_RESULTS) -> str:
    return real_data.format_tables(_real_data_records(results))


def _real_data_off_gold_table(results: Path = real_data.DEFAULT_RESULTS) -> str:
    return real_data.format_off_gold(_real_data_records(results))


def _ablation_table(results: Path = ablation.DEFAULT_RESULTS) -> str:
    records = ablation.load_results(results)
    if not records:
        raise ValueError(f"{results}: no records (run benchmarks/ablation.py first).")
    return ablation.format_tables(records, totals=False)


TABLES: dict[str, Callable[[], str]] = {
    "real_data": _real_data_table,
    "real_data_off_gold": _real_data_off_gold_table,
    "ablation": _ablation_table,
}
"""Region name -> the markdown of its table, read from the results JSON."""


def render(text: str, tables: Mapping[str, str], source: str = "document") -> str:
    """``text`` with the body of every ``<!-- table:NAME -->`` region replaced by ``tables[NAME]``.

    Raises:
        ValueError: a region names no known table (``source`` names the document).
    """
    unknown = sorted({m["name"] for m in REGION.finditer(text)} - set(tables))
    if unknown:
        raise ValueError(f"{source}: unknown table region(s) {unknown}; known: {sorted(tables)}.")
    return REGION.sub(lambda m: f"{m['start']}\n{tables[m['name']].strip()}\n\n{m['end']}", text)


def stale_regions(text: str, tables: Mapping[str, str], source: str = "document") -> list[str]:
    """Names of the regions of ``text`` whose body differs from the generated table."""
    rendered = {m["name"]: m["body"] for m in REGION.finditer(render(text, tables, source))}
    return [m["name"] for m in REGION.finditer(text) if m["body"] != rendered[m["name"]]]


def update_document(path: Path, tables: Mapping[str, str], check: bool = False) -> list[str]:
    """Rewrite ``path``'s table regions in place (atomically, only when something changed), or with ``check`` only
    report them; returns the names of the regions that were (or, with ``check``, are) out of date."""
    text = path.read_text(encoding="utf-8")
    stale = stale_regions(text, tables, str(path))
    if stale and not check:
        atomic_write_text(path, render(text, tables, str(path)))
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a document is out of date")
    parser.add_argument("documents", nargs="*", type=Path, default=list(DOCUMENTS), help="default: both READMEs")
    args = parser.parse_args(argv)
    try:
        tables = {name: make() for name, make in TABLES.items()}
        stale = {path: update_document(path, tables, args.check) for path in args.documents}
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path, names in stale.items():
        if names:
            verb = "out of date" if args.check else "rewritten"
            print(f"{path}: {', '.join(names)} {verb}" + (" (run python benchmarks/tables.py)" if args.check else ""))
    return 1 if args.check and any(stale.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
