"""Edit records: the one schema, readers for every benchmark format, the synthetic world."""

from lte.data.record import QA, EditRecord, edit_descriptor

__all__ = ["QA", "EditRecord", "edit_descriptor"]
