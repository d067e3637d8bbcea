"""The `safety-heads` subcommands (study layer): each module defines `register(subparsers)` and is
listed in `interp.cli.COMMANDS`. A model source adds its own commands through the registry
(`interp.sources.ModelSource.commands`)."""
