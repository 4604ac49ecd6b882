"""Publish an artifact folder as a commit of a Hub model repo.

The folder is loaded first, so a broken artifact is refused before anything is sent. Its files and its
card (the folder's README.md if it agrees with config.json, else a freshly rendered one) are staged in a
temporary folder, since a training run folder also holds checkpoints that do not belong on the Hub; then
``create_repo(exist_ok=True)`` and ``upload_folder``. The token goes to huggingface_hub and nowhere else:
it is never printed, logged or written.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from menas_zoo.artifact import CARD, CONFIG, MASKS, WEIGHTS, load_artifact
from menas_zoo.errors import MenasError
from menas_zoo.hub.card import check_card, render_card
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
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="menas-zoo-push-") as staging:
        for name in (CONFIG, WEIGHTS, MASKS):
            if (artifact.path / name).is_file():
                shutil.copy2(artifact.path / name, Path(staging) / name)
        (Path(staging) / CARD).write_text(str(card))
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=staging, revision=revision,
                                     commit_message=commit_message or f"Upload {repo_id.split('/')[1]} with menas-zoo")
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = " (check the token's write access)" if status in (401, 403) else ""
            raise MenasError(f"push to {repo_id} on {endpoint} failed: HTTP {status}{hint}") from None
        except Exception as exc:  # noqa: BLE001
            # huggingface_hub does not wrap transport errors (their type depends on its HTTP backend), and
            # reports a failed LFS upload as RuntimeError; the cause's first line is what the user needs.
            cause = exc.__cause__ or exc
            detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            raise MenasError(f"push to {repo_id} on {endpoint} failed: {detail}") from None
    return info.oid
