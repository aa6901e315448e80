"""The one exception type for mistakes a user can fix (bad file, bad field, bad flag).

The CLI prints it as a single line and exits with code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem in the user's input, described in one line that names where it is."""

    def __init__(self, message: str, *, file: str | None = None, record: int | None = None,
                 field: str | None = None):
        self.file, self.record, self.field = file, record, field
        where = []
        if file is not None:
            where.append(str(file))
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(f"{prefix}{message}")
