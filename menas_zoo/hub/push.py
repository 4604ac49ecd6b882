"""Publish an artifact folder as a commit of a Hub model repo.

The folder is loaded first, so a broken artifact is refused before anything is sent. Its files and its
card (the folder's README.md if it agrees with config.json, else a freshly rendered one) go up as one
commit (``create_repo(exist_ok=True)``, then ``create_commit``), read in place: a training run folder also
holds checkpoints that do not belong on the Hub, and a copy would be one more thing to clean up after a
kill. A server without Xet storage gets the same commit through plain LFS. The token goes to
huggingface_hub and nowhere else: it is never printed, logged or written.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from menas_zoo.artifact import CARD, CONFIG, DEPLOYMENT_FILES, MASKS, WEIGHTS, load_artifact
from menas_zoo.errors import MenasError, first_line
from menas_zoo.hub.card import check_card, render_card
from menas_zoo.hub.http import bounded_session, check_commit_id, network_error
from menas_zoo.hub.resolve import hub_endpoint


def push_artifact(directory: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                  commit_message: str | None = None, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload the artifact in ``directory`` to ``repo_id`` and return the new commit id."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise MenasError(f"invalid repo id {repo_id!r}: expected ORG/NAME") from None
    if "/" not in repo_id:
        raise MenasError(f"invalid repo id {repo_id!r}: expected ORG/NAME")
    token = token or get_token()  # --token, else HF_TOKEN, else the token saved by `hf auth login`
    if not token:
        raise MenasError("no Hugging Face token: pass --token, set HF_TOKEN, or run 'hf auth login'")
    artifact = load_artifact(directory)
    endpoint = hub_endpoint(endpoint)
    # A card already in the folder (written by `menas-zoo card`, perhaps edited) is kept if it still agrees
    # with config.json; otherwise one is rendered from the config.
    if (artifact.path / CARD).is_file():
        card = ModelCard((artifact.path / CARD).read_text())
    else:
        card = render_card(artifact.config, model_name=repo_id.split("/")[1], load_ref=f"hf-hub:{repo_id}")
    check_card(card, artifact.config)
    bounded_session()
    api = HfApi(endpoint=endpoint, token=token)
    message = commit_message or f"Upload {repo_id.split('/')[1]} with menas-zoo"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        try:
            info = api.create_commit(repo_id, _operations(artifact.path, str(card)), commit_message=message,
                                     revision=revision)
        except Exception as exc:  # noqa: BLE001
            if not _xet_unsupported(exc) or constants.HF_HUB_DISABLE_XET:
                raise
            # A Hub-compatible server without Xet storage: send the same commit through plain LFS.
            constants.HF_HUB_DISABLE_XET = True
            try:
                info = api.create_commit(repo_id, _operations(artifact.path, str(card)), commit_message=message,
                                         revision=revision)
            finally:
                constants.HF_HUB_DISABLE_XET = False
    except MenasError:
        raise
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = " (check the token's write access)" if status in (401, 403) else ""
        if _xet_unsupported(exc):
            hint = " (the server has no Xet storage; set HF_HUB_DISABLE_XET=1 to upload through plain LFS)"
        raise MenasError(f"push to {repo_id} on {endpoint} failed: HTTP {status}{hint}") from None
    except Exception as exc:  # noqa: BLE001
        error = network_error(exc, endpoint, f"pushing to {repo_id}")
        if error is not None:
            raise error from None
        # huggingface_hub reports a failed LFS upload as RuntimeError; the cause's first line is what the user needs.
        cause = exc.__cause__ or exc
        detail = first_line(cause)
        raise MenasError(f"push to {repo_id} on {endpoint} failed: {detail}") from None
    return check_commit_id(info.oid, endpoint)


def _operations(folder: Path, card: str) -> list[CommitOperationAdd]:
    """One commit with the artifact's files, read in place (no copy to clean up), and the card."""
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                  for name in (CONFIG, WEIGHTS, MASKS, *DEPLOYMENT_FILES) if (folder / name).is_file()]
    return operations + [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode())]


def _xet_unsupported(exc: BaseException) -> bool:
    """True when the server does not speak Xet (huggingface_hub asks it for a Xet write token first)."""
    while exc is not None:
        response = getattr(exc, "response", None)
        if response is not None and "xet-write-token" in str(getattr(response, "url", "")) \
                and response.status_code in (401, 403, 404, 405, 501):
            return True
        if "xet-write-token" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
