"""`sandbank` command line."""

import click


@click.group()
def cli() -> None:
    """Durable, portable sandboxes for AI agents."""


def main() -> None:
    cli()
