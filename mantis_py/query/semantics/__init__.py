"""Phase 2 of 5, semantics: what a parsed query means, and whether it is allowed.

``values`` and ``regex`` define how values compare, print and match; ``names`` the output column
names; ``analyze`` checks a query and returns an :class:`analysis.Analysis`; ``plan`` renders it
as the JSON that ``mantis-py check`` prints. Imports only the syntax phase.
"""
