"""benchmarks/gpu_all.py is run only when a GPU is lent, so it must not rot between loans (its peers section once failed
on an import moved elsewhere): its smoke run of one section ends well on this CPU and writes the table it promises."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gpu_all():
    spec = importlib.util.spec_from_file_location("gpu_all_under_test", ROOT / "benchmarks" / "gpu_all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it is defined
    spec.loader.exec_module(module)
    return module


def test_the_gpu_script_runs_a_section_in_process_and_writes_its_table(tmp_path, capsys):
    gpu_all = _gpu_all()
    out = tmp_path / "gpu_all.md"
    assert gpu_all.main(["--smoke", "--sections", "engine_speed", "--out", str(out)]) == 0
    table = out.read_text()
    row = next(line for line in table.splitlines() if line.startswith("| engine_speed |"))
    assert row.rstrip().endswith("| ok |") and "benchmarks/engine_speed.py --quick" in row
    assert "smoke" in table.splitlines()[0] and "<details><summary>engine_speed" in table


def test_every_section_names_a_benchmark_that_exists_and_an_unknown_one_is_refused(tmp_path):
    gpu_all = _gpu_all()
    for section in gpu_all.SECTIONS:
        assert (ROOT / "benchmarks" / section.script).is_file(), section.script
    import pytest

    with pytest.raises(SystemExit):
        gpu_all.main(["--sections", "no_such_section", "--out", str(tmp_path / "x.md")])
