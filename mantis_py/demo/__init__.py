"""The one-command demo (`mantis-py demo`): simulated services with agents, a gateway, an alert.

``traffic.py`` is the pure traffic model; ``runner.py`` the shell that starts everything.
"""

from __future__ import annotations

from .traffic import SERVICES as SERVICES
from .traffic import Scenario as Scenario

__all__ = ["SERVICES", "Scenario"]
