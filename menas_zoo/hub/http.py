"""How menas-zoo talks to a Hub it does not control: bounded waits, checked answers, one-line failures.

huggingface_hub's shared HTTP client has no timeout of its own, and several of its calls pass
``timeout=None`` explicitly, so an endpoint that accepts the connection and never answers hangs them
for ever. :func:`bounded_session` installs a client factory (huggingface_hub's own client, plus two
hooks) that every huggingface_hub call then goes through:

* a request hook fills in every missing timeout: connect from ``HF_HUB_ETAG_TIMEOUT``, read and write
  from ``HF_HUB_DOWNLOAD_TIMEOUT`` (huggingface_hub's variables and defaults, 10 s, read at call time);
* a response hook refuses a commit id in the ``X-Repo-Commit`` header that is not 40 hex characters,
  before huggingface_hub builds a cache path from it.

:func:`resolve_commit` asks for a revision's commit id the same way and checks it, so a download is
always pinned to a checked commit. :func:`network_error` turns whatever the transport raised into one
line that names the endpoint and says what happened (no answer, refused, HTTP status).
"""

from __future__ import annotations

import os
import re

from huggingface_hub import HfApi, constants, set_client_factory
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils._http import default_client_factory

from menas_zoo.errors import MenasError, first_line

COMMIT_ID = re.compile(r"[0-9a-f]{40}")
TIMEOUT_VARIABLES = ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")


class HostileAnswerError(MenasError):
    """A server answer that would make us write outside the cache (or otherwise cannot be trusted)."""


def timeouts() -> tuple[float, float]:
    """``(connect, read)`` seconds from huggingface_hub's variables, read now (it reads them at import)."""
    values = []
    for name, default in zip(TIMEOUT_VARIABLES, (constants.DEFAULT_ETAG_TIMEOUT, constants.DEFAULT_DOWNLOAD_TIMEOUT)):
        text = os.environ.get(name, "").strip()
        try:
            value = float(text) if text else float(default)
        except ValueError:
            raise MenasError(f"{name} must be a number of seconds, got {text!r}") from None
        if not value > 0:
            raise MenasError(f"{name} must be a positive number of seconds, got {text!r}")
        values.append(value)
    return values[0], values[1]


def check_commit_id(value: object, endpoint: str) -> str:
    """The commit id a server gave us, if it is one (40 lowercase hex characters); else a one-line error."""
    if not isinstance(value, str) or not COMMIT_ID.fullmatch(value):
        shown = repr(value)[:60]
        raise HostileAnswerError(f"the Hub at {endpoint} answered with an invalid commit id {shown} (expected 40 hex "
                                 "characters); refusing to use it")
    return value


def bounded_session() -> tuple[float, float]:
    """Make every huggingface_hub request from now on time-bounded and commit-checked; returns the bounds."""
    connect, read = timeouts()
    # huggingface_hub passes some of these per request; keep them in step with the environment too.
    constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT = connect, read
    limits = {"connect": connect, "read": read, "write": read, "pool": connect}

    def bound_timeouts(request) -> None:
        current = dict(request.extensions.get("timeout") or {})
        request.extensions = {**request.extensions,
                              "timeout": {k: current.get(k) if current.get(k) is not None else limit
                                          for k, limit in limits.items()}}

    def check_commit_header(response) -> None:
        commit = response.headers.get(constants.HUGGINGFACE_HEADER_X_REPO_COMMIT)
        if commit is not None:
            check_commit_id(commit, f"{response.request.url.scheme}://{response.request.url.netloc.decode()}")

    def factory():
        client = default_client_factory()
        hooks = client.event_hooks
        client.event_hooks = {"request": [*hooks.get("request", []), bound_timeouts],
                              "response": [*hooks.get("response", []), check_commit_header]}
        return client

    set_client_factory(factory)
    return connect, read


def resolve_commit(api: HfApi, repo_id: str, revision: str | None) -> str:
    """The checked commit id of ``repo_id`` at ``revision`` (a branch, tag or commit)."""
    info = api.repo_info(repo_id, revision=revision or constants.DEFAULT_REVISION)
    return check_commit_id(info.sha, api.endpoint)


def network_error(exc: BaseException, endpoint: str, action: str,
                  advice: str = "check the network or HF_ENDPOINT") -> MenasError | None:
    """One line for a transport failure or HTTP error while ``action`` (e.g. "fetching org/name"), or None.

    Transport errors are recognised by name: their classes belong to huggingface_hub's HTTP backend,
    which has changed between its versions.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "TimeoutException" in names:
        connect, read = timeouts()
        return MenasError(f"the Hub at {endpoint} did not answer within {max(connect, read):g} s while {action} "
                          f"({type(exc).__name__}); {advice}, or raise {'/'.join(TIMEOUT_VARIABLES)}")
    if names & {"ConnectError", "NetworkError", "TransportError", "ProtocolError"}:
        detail = first_line(exc)
        return MenasError(f"cannot reach the Hub at {endpoint} while {action} ({detail}): {advice}")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status is None:
            return MenasError(f"the Hub at {endpoint} failed while {action}: {first_line(exc)}")
        kind = "a server error" if status >= 500 else "an error"
        return MenasError(f"the Hub at {endpoint} answered HTTP {status} ({kind}) while {action}")
    return None
