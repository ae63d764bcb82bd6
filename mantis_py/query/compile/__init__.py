"""Phase 4 of 5, compile: an :class:`~mantis_py.query.semantics.analysis.Analysis` becomes
generated Python (``compiler``) bound to the helpers of ``runtime``; ``interpret`` is the slow,
obviously correct oracle the tests compare the compiler with. Imports only earlier phases.
"""
