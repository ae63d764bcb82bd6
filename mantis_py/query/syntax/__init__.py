"""Phase 1 of 5, syntax: query text -> tokens -> :class:`ast.Query`, and back to canonical text.

Read in this order: ``ast`` (the tree), ``diagnostics`` (error objects and suggestions),
``lexer`` (contextual words), ``spelling`` and ``format`` (canonical text), ``parser`` (lark's
LALR tables over ``grammar.lark``). Imports nothing from the later phases.
"""
