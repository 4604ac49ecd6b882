"""Add (or refresh) a zoo entry from a trained artifact: bundle it, push it, pin it in the registry.

    python scripts/register_model.py RUN_DIR --name mt-test --repo-id menas-zoo/mt-test \
        --endpoint URL --token TOKEN [--description TEXT] [--bundle] [--fixture]

1. Re-saves the artifact with its description and renders its card (``README.md``) into a staging folder,
   with the deployment files found beside it in RUN_DIR (``model.onnx``, ``model.int8.onnx``).
2. Pushes that folder with ``push_artifact`` and takes the commit id the Hub returns as the pin.
3. With ``--bundle``, moves the folder to ``menas_zoo/hub/bundled/NAME/`` (keep bundled models to KBs).
4. Writes the entry to ``menas_zoo/hub/registry.json``: repo id, pinned revision, the sha256 of every
   artifact file and of every deployment asset, and the metrics of config.json. Nothing is typed by hand, so
   registry, card and files agree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from menas_zoo.artifact import ARTIFACT_FILES, DEPLOYMENT_FILES, file_sha256, load_artifact, save_artifact
from menas_zoo.hub.card import write_card
from menas_zoo.hub.push import push_artifact
from menas_zoo.io import write_json_atomic

HUB_DIR = Path(__file__).resolve().parents[1] / "menas_zoo" / "hub"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--endpoint", required=True, help="Hub (or Hub-protocol) URL to push to")
    parser.add_argument("--token", required=True)
    parser.add_argument("--description", default=None)
    parser.add_argument("--bundle", action="store_true", help="ship a copy in the package")
    parser.add_argument("--fixture", action="store_true",
                        help="a test fixture: loadable by name, left out of `menas-zoo list`")
    args = parser.parse_args()

    artifact = load_artifact(args.run_dir)
    config = artifact.config
    registry_path = HUB_DIR / "registry.json"
    registry = json.loads(registry_path.read_text())
    # a new version of a registered model keeps its description unless one is given
    description = (args.description or config.get("description")
                   or registry["models"].get(args.name, {}).get("description") or None)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / args.name
        save_artifact(staging, artifact.model, parent_genotype=artifact.parent_genotype, masks=artifact.masks,
                      metrics=config["metrics"], input_spec=config["input_spec"], labels=config["labels"],
                      provenance=config["provenance"], description=description)
        write_card(staging, model_name=args.name, load_ref=args.name)
        for name in DEPLOYMENT_FILES:
            if (args.run_dir / name).is_file():
                shutil.copy2(args.run_dir / name, staging / name)
        commit = push_artifact(staging, args.repo_id, endpoint=args.endpoint, token=args.token,
                               commit_message=f"Publish {args.name}")
        files = {name: file_sha256(staging / name) for name in ARTIFACT_FILES if (staging / name).is_file()}
        assets = {name: file_sha256(staging / name) for name in DEPLOYMENT_FILES if (staging / name).is_file()}
        metrics = load_artifact(staging).config["metrics"]
        if args.bundle:
            target = HUB_DIR / "bundled" / args.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(staging, target)

    registry["models"][args.name] = {"repo_id": args.repo_id, "revision": commit, "files": files, "metrics": metrics,
                                     "bundled": args.bundle,
                                     "description": description or ""}
    if assets:
        registry["models"][args.name]["assets"] = assets
    if args.fixture:
        registry["models"][args.name]["fixture"] = True
    write_json_atomic(registry_path, registry)
    print(f"{args.name}: {args.repo_id}@{commit}")


if __name__ == "__main__":
    main()
