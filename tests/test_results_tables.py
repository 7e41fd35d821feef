# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""benchmarks/tables.py: the README tables are the ones the results JSON files print, and stay so."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# loaded from its file under its own name: ``tables`` is also the import name of PyTables
_SPEC = importlib.util.spec_from_file_location(
    "neurolink_results_tables", Path(__file__).resolve().parents[1] / "benchmarks" / "tables.py"
)
tables = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tables)


def test_readmes_match_the_results_json(capsys):
    assert tables.main(["--check"]) == 0, capsys.readouterr().out


def test_both_readmes_hold_the_generated_tables():
    readme, bundle_docs = (
        [m["name"] for m in tables.REGION.finditer(path.read_text(encoding="utf-8"))] for path in tables.DOCUMENTS
    )
    assert readme == ["real_data", "real_data_off_gold", "ablation"]
    assert bundle_docs == ["ablation"]


def test_check_finds_a_stale_table_and_the_rewrite_restores_it(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    fresh = "intro\n\n<!-- table:t -->\n\n| a |\n|---|\n| 1.0 |\n\n<!-- /table -->\n\nend\n"
    doc.write_text(fresh.replace("1.0", "2.0"))
    assert tables.update_document(doc, {"t": "| a |\n|---|\n| 1.0 |\n"}, check=True) == ["t"]
    assert "2.0" in doc.read_text()  # --check never writes
    assert tables.update_document(doc, {"t": "| a |\n|---|\n| 1.0 |\n"}) == ["t"]
    assert doc.read_text() == fresh
    assert tables.update_document(doc, {"t": "| a |\n|---|\n| 1.0 |\n"}, check=True) == []


def test_an_unknown_region_is_refused_with_the_document_named(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- table:nope -->\nold\n<!-- /table -->\n")
    with pytest.raises(ValueError, match=r"doc\.md: unknown table region\(s\) \['nope'\]"):
        tables.update_document(doc, {"t": "x"})
