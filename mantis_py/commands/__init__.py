"""One module per `mantis-py` subcommand. Each exposes ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit code). Modules import their heavy dependencies inside ``run``
so that ``mantis-py --help`` stays fast."""
