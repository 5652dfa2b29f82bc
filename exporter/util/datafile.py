"""The one loader for the YAML data files: thresholds, pricing and Phase-2 candidates.

Each file ships in ``exporter/data/`` and may be replaced (or, for pricing, extended) by a
user's own file. Whatever goes wrong, the caller gets a :class:`DataFileError` whose text is
one line naming the file and the first problem.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from exporter.util.errors import EXIT_USAGE, UserError, describe_validation_error

__all__ = ["MAX_DATA_FILE_BYTES", "DataFileError", "load_data_file"]

MAX_DATA_FILE_BYTES: Final = 1024 * 1024  # a data file is a page of YAML, not a megabyte

M = TypeVar("M", bound=BaseModel)


class DataFileError(UserError):
    """A data file is missing, unreadable, too large or invalid; ``str()`` is one line."""

    exit_code = EXIT_USAGE  # bad input, as every command's help says


def load_data_file(model: type[M], packaged: str, path: Path | None, *, kind: str) -> M:
    """``path`` (else the packaged ``exporter/data/<packaged>``) validated as ``model``.

    ``kind`` names the file in messages: "thresholds", "pricing", "candidates".
    """
    origin = str(path) if path is not None else "built-in"
    try:
        if path is None:
            text = resources.files("exporter.data").joinpath(packaged).read_text("utf-8")
        else:
            with path.open(encoding="utf-8") as handle:
                text = handle.read(MAX_DATA_FILE_BYTES + 1)
            if len(text) > MAX_DATA_FILE_BYTES:
                raise DataFileError(f"{kind} file {path} is larger than 1 MiB")
        return model.model_validate(yaml.safe_load(text))
    except OSError as exc:
        raise DataFileError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataFileError(f"invalid {kind} file {origin}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise DataFileError(f"invalid {kind} file {origin}: not YAML: {first}") from exc
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        raise DataFileError(f"invalid {kind} file {origin}: {reason}") from exc
