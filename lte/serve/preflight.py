"""Checks `lte serve` runs before it starts Ray, so a bad port, model or shard file is one line.

Inside Ray the same mistakes surface only after the deployments have retried their constructors
(90-120 s on a busy box) and as a traceback that names no file; here they take milliseconds.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from pathlib import Path

from lte.errors import UserError
from lte.layout import EDIT_LOG


def check_port_free(host: str, port: int) -> None:
    """Bind (host, port) once and let go; Serve's proxy binds it later with SO_REUSEADDR too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use; stop what listens "
                                "there or pass another --port", field="port") from None
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror})",
                            field="host") from None


def check_model(name_or_path: str) -> None:
    """The Generator's model exists: a folder with config.json, or a hub id in the local cache."""
    from lte.modeling.load import resolve_model_path

    resolved = resolve_model_path(name_or_path)
    path = Path(resolved).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json", field="model.name_or_path")
        return
    looks_like_path = resolved.startswith(("/", ".", "~")) or resolved.count("/") > 1
    if looks_like_path or path.exists():
        raise UserError(f"no model folder at {path}", field="model.name_or_path")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(resolved, "config.json"), str):
            raise UserError(f"{resolved!r} is neither a local folder nor in the Hugging Face "
                            "cache, and HF_HUB_OFFLINE is set", field="model.name_or_path")


def check_shard_logs(folders: list[Path]) -> None:
    """Each existing shard log opens as SQLite (a damaged one is named here, not deep in Ray)."""
    for folder in folders:
        log = folder / EDIT_LOG
        if not log.is_file():
            continue
        try:
            con = sqlite3.connect(f"file:{log}?mode=ro", uri=True)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error as e:
            raise UserError(f"not a readable edit log ({e}); restore it from a backup or move "
                            "the shard folder away", file=str(log)) from None
