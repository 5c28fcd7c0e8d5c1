"""Bearer tokens for the inference server and its clients (standard library only).

The token comes from a file (``--token-file``) or the ``EDGESLIM_TOKEN`` environment variable,
never from a command-line argument (those are visible to every user in ``ps``)."""
from __future__ import annotations

import hmac
import os
from pathlib import Path

from ..errors import ConfigError

TOKEN_ENV = "EDGESLIM_TOKEN"
MIN_TOKEN_CHARS = 16
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > token.txt"


def load_token(token_file: str | os.PathLike | None = None) -> str | None:
    """The token in ``token_file`` (surrounding whitespace stripped), else ``$EDGESLIM_TOKEN``,
    else None (no authentication)."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the token file {token_file}: {e}") from None
        source = f"the token file {token_file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
        source = f"${TOKEN_ENV}"
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"{source} must hold one token of at least {MIN_TOKEN_CHARS} printable characters "
                          f"without spaces; make one with: {MAKE_TOKEN}")
    return token


def bearer_header(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def is_authorized(authorization: str | bytes | None, token: str | None) -> bool:
    """Does an ``Authorization`` header carry ``token``? Always true when no token is set.
    The comparison takes the same time wherever the first wrong character is."""
    if token is None:
        return True
    if authorization is None:
        return False
    value = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    scheme, _, presented = value.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), token.encode("utf-8"))
