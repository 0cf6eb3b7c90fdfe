"""Errors that the CLI turns into exit codes and one-line messages.

Exit codes: 0 done, 2 bad configuration or input, 3 data-quality gate failed, 4 another run of the
date holds its lock (try later), 1 anything else.
"""
from __future__ import annotations


class RecjobsError(Exception):
    """Base class for errors that carry an exit code and a message meant for the user."""

    exit_code = 1


class ConfigError(RecjobsError):
    """A configuration file, key or value is wrong. The message names the key and the file."""

    exit_code = 2


class InputError(RecjobsError):
    """An input path or an input file is unusable. The message names the path and the fix."""

    exit_code = 2


class EnvironmentProblem(RecjobsError):
    """The machine lacks something the jobs need (Java 17+, the Delta jars)."""

    exit_code = 2


class DataQualityError(RecjobsError):
    """An error-level data-quality expectation failed; nothing was published."""

    exit_code = 3


class RunLocked(RecjobsError):
    """Another run of the same date is in progress; a scheduler should try again later."""

    exit_code = 4
