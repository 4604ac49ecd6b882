"""A small write endpoint of the Hugging Face Hub protocol, for push tests without the internet.

No installable server accepts Hub uploads offline, and olah (the read server the tests use) only reads.
This one implements the write half of the protocol that ``huggingface_hub`` actually speaks with Xet
disabled (``HF_HUB_DISABLE_XET=1``):

    POST /api/repos/create                              create (409 + url when it exists)
    POST /api/validate-yaml                             card metadata check (accepts what parses)
    POST /api/models/{org}/{name}/preupload/{rev}       regular or LFS upload mode per file
    POST /{org}/{name}.git/info/lfs/objects/batch       LFS batch: upload + verify actions
    PUT  /lfs/{org}/{name}/{oid}?sig=...                LFS object body (signed URL, sha256 checked)
    POST /lfs/{org}/{name}/verify                       LFS verify
    POST /api/models/{org}/{name}/branch/{branch}       create a branch at the default branch's head
    POST /api/models/{org}/{name}/commit/{rev}          ndjson commit -> {commitOid, commitUrl}

Storage is real: every commit becomes a git commit made with git plumbing in
``MIRRORS/models/{org}/{name}`` (a non-bare repo, as olah's ``mirrors-path`` expects), LFS files become
pointer blobs plus objects under ``.git/lfs/objects/aa/bb/<sha256>``. Reading back goes through olah, an
independent implementation, so a push is only trusted once a third party serves it back identically.
Write calls need ``Authorization: Bearer <token>``. Not covered: Xet, Hub-side validation, permissions.

Run alone: ``python tests/hub_write_server.py MIRRORS --port 8765 --token hf_test``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gz", ".zip", ".npy", ".npz", ".pkl")
REGULAR_MAX_BYTES = 10 * 1024 * 1024  # the Hub sends bigger files through LFS whatever their name
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


class GitStore:
    """Hub repos as git repos under ``root/models``; one lock serializes all writes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()

    def path(self, repo_id: str) -> Path:
        return self.root / "models" / repo_id

    def git(self, repo_id: str, *args: str, input: bytes | None = None, env: dict | None = None) -> str:
        result = subprocess.run(["git", *args], cwd=self.path(repo_id), input=input, capture_output=True,
                                env={**os.environ, **(env or {})}, check=True)
        return result.stdout.decode().strip()

    def head(self, repo_id: str, branch: str) -> str | None:
        try:
            return self.git(repo_id, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        except subprocess.CalledProcessError:
            return None

    def lfs_object(self, repo_id: str, oid: str) -> Path:
        return self.path(repo_id) / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid

    def create(self, repo_id: str) -> bool:
        """Create the repo with an initial commit holding the Hub's .gitattributes; False if it exists."""
        with self.lock:
            if self.path(repo_id).exists():
                return False
            self.path(repo_id).mkdir(parents=True)
            self.git(repo_id, "init", "-q", "-b", "main")
        self.commit(repo_id, "main", "initial commit", [("file", {"path": ".gitattributes",
                                                                  "content": GITATTRIBUTES.encode()})])
        return True

    def commit(self, repo_id: str, branch: str, message: str, ops: list[tuple[str, dict]],
               parent_expected: str | None = None) -> str:
        """Apply ``ops`` on top of ``branch`` in a private index; return the new commit's sha."""
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_AUTHOR_NAME": "hub-write-server",
                   "GIT_AUTHOR_EMAIL": "push@localhost", "GIT_COMMITTER_NAME": "hub-write-server",
                   "GIT_COMMITTER_EMAIL": "push@localhost"}
            parent = self.head(repo_id, branch)
            if parent_expected and parent_expected != parent:
                raise Conflict(f"parent commit {parent_expected} is not the head of {branch}")
            if parent:
                self.git(repo_id, "read-tree", parent, env=env)
            for kind, value in ops:
                path = value["path"]
                if kind in ("file", "lfsFile"):
                    if kind == "file":
                        content = value["content"]
                    else:
                        obj = self.lfs_object(repo_id, value["oid"])
                        if not obj.is_file():
                            raise Conflict(f"LFS object {value['oid']} of {path} was never uploaded")
                        content = lfs_pointer(value["oid"], obj.stat().st_size)
                    blob = self.git(repo_id, "hash-object", "-w", "--stdin", input=content, env=env)
                    self.git(repo_id, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
                elif kind == "deletedFile":
                    self.git(repo_id, "update-index", "--force-remove", path, env=env)
                elif kind == "deletedFolder":
                    files = self.git(repo_id, "ls-files", "--", path.rstrip("/") + "/", env=env).splitlines()
                    for name in files:
                        self.git(repo_id, "update-index", "--force-remove", name, env=env)
            tree = self.git(repo_id, "write-tree", env=env)
            sha = self.git(repo_id, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=env)
            self.git(repo_id, "update-ref", f"refs/heads/{branch}", sha, *([parent] if parent else []))
            return sha


class Conflict(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    store: GitStore
    token: str

    def log_message(self, fmt: str, *args) -> None:  # keep test output clean
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def reply(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        self.reply(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def repo_or_404(self, repo_id: str) -> bool:
        if self.store.path(repo_id).is_dir():
            return True
        self.reply(404, {"error": f"Repository {repo_id} not found"})
        return False

    # -- routes --------------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = unquote(self.path.split("?")[0])
        routes = [
            (r"/api/repos/create", self.create_repo),
            (r"/api/validate-yaml", self.validate_yaml),
            (rf"/api/models/{REPO}/preupload/(?P<rev>.+)", self.preupload),
            (rf"/{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            (rf"/lfs/{REPO}/verify", self.lfs_verify),
            (rf"/api/models/{REPO}/branch/(?P<rev>.+)", self.create_branch),
            (rf"/api/models/{REPO}/commit/(?P<rev>.+)", self.commit),
        ]
        for pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                if self.authorized():
                    handler(**match.groupdict())
                return
        self.reply(404, {"error": f"no route for POST {path}"})

    def upload_signature(self, repo: str, oid: str) -> str:
        # Like the Hub's presigned storage URLs: the client PUTs without its token, so the URL carries proof.
        return hmac.new(self.token.encode(), f"{repo}/{oid}".encode(), "sha256").hexdigest()

    def do_PUT(self) -> None:
        match = re.fullmatch(rf"/lfs/{REPO}/(?P<oid>[0-9a-f]{{64}})\?sig=(?P<sig>[0-9a-f]+)", unquote(self.path))
        if not match:
            return self.reply(404, {"error": "no such upload URL"})
        if not hmac.compare_digest(match["sig"], self.upload_signature(match["repo"], match["oid"])):
            return self.reply(403, {"error": "upload URL signature does not match"})
        if self.repo_or_404(match["repo"]):
            data = self.body()
            if hashlib.sha256(data).hexdigest() != match["oid"]:
                return self.reply(400, {"error": "uploaded content does not match its sha256"})
            target = self.store.lfs_object(match["repo"], match["oid"])
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            self.reply(200)

    def do_GET(self) -> None:
        self.reply(404, {"error": "this server only writes; read through olah"})

    def create_repo(self) -> None:
        payload = json.loads(self.body())
        if payload.get("type", "model") != "model":
            return self.reply(400, {"error": "only model repos are supported"})
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if "/" not in repo_id:
            return self.reply(400, {"error": "repo id must be org/name"})
        url = f"{self.base()}/{repo_id}"
        if not self.store.create(repo_id):
            return self.reply(409, {"error": "You already created this model repo", "url": url})
        self.reply(200, {"url": url, "name": repo_id})

    def validate_yaml(self) -> None:
        json.loads(self.body())
        self.reply(200, {"errors": [], "warnings": []})

    def preupload(self, repo: str, rev: str) -> None:
        if not self.repo_or_404(repo):
            return
        files = json.loads(self.body())["files"]
        modes = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                  "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) or f["size"] > REGULAR_MAX_BYTES
                  else "regular"} for f in files]
        self.reply(200, {"files": modes, "commitOid": self.store.head(repo, rev)})

    def lfs_batch(self, repo: str) -> None:
        if not self.repo_or_404(repo):
            return
        objects = []
        for obj in json.loads(self.body())["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if not self.store.lfs_object(repo, obj["oid"]).is_file():  # already stored: nothing to send
                sig = self.upload_signature(repo, obj["oid"])
                entry["actions"] = {"upload": {"href": f"{self.base()}/lfs/{repo}/{obj['oid']}?sig={sig}"},
                                    "verify": {"href": f"{self.base()}/lfs/{repo}/verify"}}
            objects.append(entry)
        self.reply(200, {"transfer": "basic", "objects": objects})

    def lfs_verify(self, repo: str) -> None:
        obj = json.loads(self.body())
        path = self.store.lfs_object(repo, obj["oid"])
        if path.is_file() and path.stat().st_size == obj["size"]:
            return self.reply(200)
        self.reply(404, {"error": f"object {obj['oid']} not found"})

    def create_branch(self, repo: str, rev: str) -> None:
        if not self.repo_or_404(repo):
            return
        if self.store.head(repo, rev):
            return self.reply(409, {"error": f"branch {rev} already exists"})
        self.store.git(repo, "update-ref", f"refs/heads/{rev}", self.store.head(repo, "main"))
        self.reply(200)

    def commit(self, repo: str, rev: str) -> None:
        if not self.repo_or_404(repo):
            return
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        ops = []
        for item in lines:
            value = dict(item["value"])
            if item["key"] == "file":
                value["content"] = base64.b64decode(value["content"])
            if item["key"] != "header":
                ops.append((item["key"], value))
        if not self.store.head(repo, rev):
            return self.reply(404, {"error": f"revision {rev} not found"})
        message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
        try:
            sha = self.store.commit(repo, rev, message, ops, parent_expected=header.get("parentCommit"))
        except Conflict as exc:
            return self.reply(412 if "parent" in str(exc) else 422, {"error": str(exc)})
        self.reply(200, {"commitOid": sha, "commitUrl": f"{self.base()}/{repo}/commit/{sha}", "success": True})


def make_server(mirrors: str | Path, token: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (0 = a free port); call ``serve_forever`` to run it."""
    handler = type("BoundHandler", (Handler,), {"store": GitStore(Path(mirrors)), "token": token})
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirrors", help="olah's mirrors-path: repos go to MIRRORS/models/ORG/NAME")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", required=True, help="the bearer token write calls must present")
    args = parser.parse_args()
    server = make_server(args.mirrors, args.token, port=args.port)
    print(f"hub write endpoint on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
