"""mantis_py: ask running Python services live questions in MQL.

See README.md for a tour and docs/ for the architecture, protocol and operations.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
