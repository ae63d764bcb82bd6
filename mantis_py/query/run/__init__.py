"""Phase 5 of 5, run: the engines that execute a compiled query.

``groups`` (group tables), ``join`` and ``anomaly`` (the JOIN and ANOMALY cores), ``engine``
(:class:`engine.PreparedQuery`, the agent's ``SourceRunner`` and the gateway's ``Merger``) and
``replay`` (the single-node engine over a file). Imports any earlier phase.
"""
