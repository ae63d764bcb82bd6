"""The public names of mantis_py.wire, mantis_py.agents and mantis_py.testing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["mantis_py.wire", "mantis_py.agents", "mantis_py.testing"])
def test_every_exported_name_exists(name: str) -> None:
    mod = importlib.import_module(name)
    for attr in mod.__all__:
        assert getattr(mod, attr) is not None, attr


def test_wire_exports_every_module_name() -> None:
    import mantis_py.wire as wire

    for sub in ("messages", "codec", "agent_link", "client_link"):
        mod = importlib.import_module(f"mantis_py.wire.{sub}")
        missing = set(mod.__all__) - set(wire.__all__) - {"dumps", "Fragment", "VALUE_OPTS"}
        missing -= {"decode_value", "encode_value", "encode_value_slow", "to_plain"}
        missing -= {"Checker"}
        assert not missing, (sub, missing)


def test_a_threaded_host_never_imports_trio() -> None:
    code = "import sys, mantis_py.agents as a; a.Agent; print('trio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
