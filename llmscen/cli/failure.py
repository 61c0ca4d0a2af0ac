"""The error a command raises for the user: a message and the exit code it maps to."""

from __future__ import annotations

import click

from llmscen.cli import exitcodes
from llmscen.spec.diagnostics import ScenarioError


class Failure(click.ClickException):
    """An error for the user, with the exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        # click declares exit_code on the class and reads it from the instance
        vars(self)["exit_code"] = code

    def show(self, file: object = None) -> None:
        click.echo(f"llmscen: {self.message}", err=True)


def invalid(exc: ScenarioError) -> Failure:
    count = len(exc.diagnostics)
    summary = f"{count} problem{'s' if count != 1 else ''} found; nothing was sent"
    return Failure(f"{exc}\n{summary}", exitcodes.INVALID_INPUT)
