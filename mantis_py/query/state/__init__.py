"""Phase 3 of 5, state: the pure building blocks the engines keep per query.

``caps`` (run-time caps), ``percentiles`` and ``aggregates`` (mergeable partial states),
``sampling`` (RANDOM / STICKY keep decisions), ``windows`` (which window an event falls in),
``projection`` (the fields an agent ships). Imports only the syntax and semantics phases.
"""
