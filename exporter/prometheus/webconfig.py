"""The web configuration file of ``serve``: TLS and basic auth, as Prometheus exporters do it.

The file format is exporter-toolkit's (``--web.config.file`` of node_exporter and friends), so
one file can serve both::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: clients.crt
      min_version: TLS12               # TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hashes only

An empty file means plain HTTP without authentication. Unknown keys, plain-text passwords and
unreadable certificates are one-line errors at start-up, never at the first request. Of
exporter-toolkit's options, ``cipher_suites``, ``curve_preferences``, ``client_allowed_sans``,
``RequestClientCert``/``RequireAnyClientCert`` and TLS 1.0/1.1 are not offered: OpenSSL's
defaults for TLS 1.2+ are the safe choice. Files are read once; restart ``serve`` to apply a
changed file or rotated certificate.

:class:`BasicAuth` checks ``Authorization`` headers: bcrypt comparison (constant time; an
unknown user costs the same as a wrong password), with successful checks cached for
``cache_seconds`` under an HMAC of user and password, so that a scrape does not pay bcrypt's
deliberate ~100-300 ms. ``bcrypt`` is the optional ``web`` extra, imported only when a file
names users.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from exporter.util.errors import UserError, describe_validation_error

__all__ = [
    "BasicAuth",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "WebConfigFile",
    "load_web_config",
]

# $2a$/$2b$/$2y$, a two-digit cost 04..31, 22 characters of salt and 31 of hash.
_BCRYPT_HASH: Final = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_HASH_HELP: Final = (
    "hash it with: python -c 'import bcrypt, getpass; "
    "print(bcrypt.hashpw(getpass.getpass().encode(), bcrypt.gensalt()).decode())'"
)
_TLS_VERSIONS: Final = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class WebConfigError(UserError):
    """The web configuration file cannot be used (exit code 2, like a bad flag)."""

    exit_code = 2


class TLSServerConfig(BaseModel):
    """``tls_server_config``: the server's certificate and, optionally, client verification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path
    client_auth_type: Literal[
        "NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"
    ] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS12", "TLS13"] = "TLS13"

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        verifies = self.client_auth_type != "NoClientCert"
        if verifies and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if not verifies and self.client_ca_file is not None:
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert")
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is above max_version")
        return self


class WebConfigFile(BaseModel):
    """The file as written: both sections optional, nothing else allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None

    @field_validator("basic_auth_users")
    @classmethod
    def _hashed(cls, users: dict[str, str] | None) -> dict[str, str] | None:
        for user, hashed in (users or {}).items():
            if not user or ":" in user:
                raise ValueError(f"user name {user!r} is empty or contains ':'")
            if not _BCRYPT_HASH.fullmatch(hashed):
                raise ValueError(
                    f"the password of {user!r} is not a bcrypt hash (plain-text passwords are "
                    f"not accepted); {_HASH_HELP}"
                )
        return users


@dataclass(frozen=True)
class WebConfig:
    """What ``serve`` needs at run time: a TLS context and an authenticator, each optional."""

    ssl_context: ssl.SSLContext | None = None
    auth: BasicAuth | None = None


def load_web_config(path: Path) -> WebConfig:
    """Read, validate and load ``path``; raises :class:`WebConfigError` with one line."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(f"web config {path}: cannot read: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0]
        raise WebConfigError(f"web config {path}: not valid YAML: {problem}") from exc
    try:
        parsed = WebConfigFile.model_validate(raw or {})
    except ValidationError as exc:
        detail = describe_validation_error(exc, "file").replace("Value error, ", "")
        raise WebConfigError(f"web config {path}: {detail}") from exc
    base = path.parent
    context = (
        _ssl_context(parsed.tls_server_config, base, path) if parsed.tls_server_config else None
    )
    auth = BasicAuth(parsed.basic_auth_users) if parsed.basic_auth_users else None
    return WebConfig(context, auth)


def _ssl_context(tls: TLSServerConfig, base: Path, path: Path) -> ssl.SSLContext:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    cert, key = resolve(tls.cert_file), resolve(tls.key_file)
    try:
        # A password callback that returns nothing: an encrypted key fails here instead of
        # prompting on the terminal.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WebConfigError(
            f"web config {path}: cannot load cert_file {cert} with key_file {key}: {reason}"
        ) from exc
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        ca = resolve(tls.client_ca_file)
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"web config {path}: cannot load client_ca_file {ca}: {exc}"
            ) from exc
    return context


def _import_bcrypt() -> ModuleType:
    try:
        import bcrypt  # noqa: PLC0415 (optional extra, needed only with basic_auth_users)
    except ImportError as exc:
        raise WebConfigError(
            "basic_auth_users needs the bcrypt package: pip install 'batch-metrics[web]'"
        ) from exc
    return bcrypt


class BasicAuth:
    """Checks HTTP basic credentials against bcrypt hashes, caching recent successes."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._bcrypt = _import_bcrypt()
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        # An unknown user is checked against a real hash of the same cost and then refused,
        # so that response times do not tell which user names exist.
        self._decoy = next(iter(self._users.values()))
        self._secret = secrets.token_bytes(32)  # cache keys are useless outside this process
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._lock = threading.Lock()

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries valid credentials."""
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        key = hmac.new(self._secret, user + b"\0" + password, hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            expires = self._cache.get(key)
            if expires is not None and now < expires:
                return True
        hashed = self._users.get(user.decode("utf-8", "replace"))
        try:
            matches = self._bcrypt.checkpw(password, hashed or self._decoy)
        except ValueError:  # e.g. a password over bcrypt's 72 bytes (bcrypt >= 5 refuses it)
            matches = False
        if not (matches and hashed is not None):
            return False
        with self._lock:
            self._cache[key] = now + self._cache_seconds
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return True


def _parse_basic(authorization: str | None) -> tuple[bytes, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None
