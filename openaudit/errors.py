"""The few exceptions that cross module boundaries; the CLI maps them to exit codes in one place."""


class OpenAuditError(Exception):
    """Base class for every error openaudit raises on purpose."""


class UsageError(OpenAuditError):
    """Bad usage or a source that does not exist (exit 2)."""


class AuditIncomplete(OpenAuditError):
    """The audit could not complete (exit 3)."""


class MalformedInput(OpenAuditError):
    """A file from the release is malformed or hostile; callers turn this into a finding.

    ``finding_id`` names the entry in ``checks/findings/*.yaml`` that describes the problem.
    """

    def __init__(self, finding_id: str, message: str):
        super().__init__(message)
        self.finding_id = finding_id


class ParseTimeout(MalformedInput):
    """A parser ran past its deadline: the file is treated as hostile."""

    def __init__(self, message: str = "parsing took longer than its time limit"):
        super().__init__("parse-timeout", message)
