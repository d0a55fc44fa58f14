"""Git for projects, by running the user's git: checkouts, task branches, commits, pushes, verify, merges.

Blocking functions (call them in a thread; a project attempt runs them through
gitproc.run_stoppable, so a cancel kills the git under way). The project repo is only ever written through pushes to
`codeswarm/<project>/...` refs, never to a checked-out branch, so the user's branch and work tree
are untouched. Each node works in its own clone (inside its workspace, so it works on Slurm nodes
from a path on the shared filesystem or any URL the node's git reaches).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from codeswarm.core.project_records import BRANCH_PREFIX, integration_branch, task_branch
from codeswarm.projects import gitproc
from codeswarm.projects.gitproc import GitError, GitStopped

__all__ = ["BRANCH_PREFIX", "GitError", "GitStopped", "IntegrationStep", "MergeConflict", "integration_branch",
           "task_branch"]

OUTPUT_TAIL = 16 * 1024
BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
GIT_TIMEOUT = 600.0
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_IDENTITY = ["-c", "user.name=codeswarm", "-c", "user.email=codeswarm@localhost", "-c", "commit.gpgsign=false"]


@dataclass(frozen=True)
class MergeConflict:
    branch: str
    files: tuple[str, ...]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # GIT_OPTIONAL_LOCKS=0: status-like reads never take index.lock (nothing else works in a node's clone)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C", GIT_MERGE_AUTOEDIT="no",
               GIT_OPTIONAL_LOCKS="0")
    return env


def git(cwd: Path | None, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run git (in its own process group, killable by the attempt's stop: gitproc.run)."""
    # maintenance.auto/gc.auto: a commit or merge would start `git maintenance run --auto` (one more
    # process per task on a busy node; a checkout that borrows the repo's objects needs no gc)
    cmd = ["git", "-c", "protocol.ext.allow=never", "-c", "maintenance.auto=false", "-c", "gc.auto=0", *args]
    proc = gitproc.run(cmd, cwd, _env(), timeout, input)
    if check and proc.returncode != 0:
        words = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitError(f"git {args[0]} failed: {' | '.join(words[-4:]) or f'exit {proc.returncode}'}")
    return proc


def remote_heads(repo: str, prefix: str = "") -> dict[str, str]:
    """Branches of repo (path or URL) -> commit, optionally only those under prefix ("a/b/")."""
    pattern = f"refs/heads/{prefix}*" if prefix else "refs/heads/*"
    proc = git(None, "ls-remote", "--heads", "--", repo, pattern, check=False, timeout=120)
    if proc.returncode != 0:
        words = (proc.stderr or "").strip().splitlines()
        raise GitError(f"repository {repo!r} is not reachable: {words[-1] if words else 'git ls-remote failed'}")
    out = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            out[ref[len("refs/heads/"):]] = sha
    return out


def check_repo(repo: str, base: str) -> str:
    """The commit of `base` in repo; GitError with a clear reason when the repo or the branch is missing."""
    heads = remote_heads(repo)
    if base not in heads:
        raise GitError(f"repository {repo!r} has no branch {base!r}")
    return heads[base]


def is_local_repo(repo: str) -> bool:
    """A path on this host (or the cluster's shared filesystem), not a URL or an scp-like `host:path`."""
    if "://" in repo or re.match(r"^[^/]+:", repo):
        return False
    return Path(repo).is_dir()


def prepare_checkout(repo: str, checkout: Path, refs: tuple[str, ...] = (), fetch: bool = True) -> None:
    """A clone of repo at `checkout` (made once per node and project), fetched up to date.

    A repo on a path (local, or a bare repo on the cluster's shared directory) is cloned with
    `--shared`: the clone borrows the repo's object store (alternates), so a commit another node
    pushed is readable at once and a task's checkout needs no fetch. A URL gets a plain clone and
    a fetch of `refs` (branch names) when a commit is missing.
    """
    marker = checkout / ".git" / "codeswarm-origin"
    if not marker.exists():
        _clone(repo, checkout)
    elif marker.read_text() != repo:
        git(checkout, "remote", "set-url", "origin", repo)
        marker.write_text(repo)
    if fetch:
        fetch_refs(checkout, refs)


def _clone(repo: str, checkout: Path) -> None:
    """Clone into a side directory and rename it into place once complete (with its origin marker),
    so a clone that was stopped or killed half-way never passes for a checkout: the next attempt
    drops what it left and clones again."""
    partial = checkout.with_name(checkout.name + ".cloning")
    shared = ["--shared"] if is_local_repo(repo) else []
    try:
        for leftover in (partial, checkout):  # a half clone; a checkout without its marker is one too
            if leftover.exists():
                shutil.rmtree(leftover)
        checkout.parent.mkdir(parents=True, exist_ok=True)
        git(None, "clone", "-q", "--no-checkout", *shared, "--", repo, str(partial))
        (partial / ".git" / "codeswarm-origin").write_text(repo)
        partial.rename(checkout)
    except OSError as exc:
        raise GitError(f"cannot prepare the checkout {checkout}: {exc}") from exc


LOCKS = ("index.lock", "HEAD.lock", "ORIG_HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock")


def clear_locks(checkout: Path) -> list[str]:
    """Remove the lock files a killed git left in a node's clone (nothing else runs git there, so a
    lock is stale once the attempt's git ended); without this the next checkout or commit of the
    retry fails on `index.lock` or a branch's ref lock. The names removed."""
    gitdir = checkout / ".git"
    found = [gitdir / name for name in LOCKS] + list((gitdir / "refs").rglob("*.lock"))
    removed = []
    for path in found:
        try:
            path.unlink()
            removed.append(str(path.relative_to(gitdir)))
        except FileNotFoundError:
            continue
    return removed


def fetch_refs(checkout: Path, refs: tuple[str, ...] = ()) -> None:
    specs = [f"+refs/heads/{r}:refs/remotes/origin/{r}" for r in refs] or ["+refs/heads/*:refs/remotes/origin/*"]
    git(checkout, "fetch", "-q", "--no-tags", "origin", *specs)


def missing_commits(checkout: Path, commits: tuple[str, ...]) -> tuple[str, ...]:
    """Those of commits (shas) this clone cannot read (one `cat-file --batch-check` for all)."""
    if not commits:
        return ()
    proc = git(checkout, "cat-file", "--batch-check", check=False,
               input="".join(f"{c}^{{commit}}\n" for c in commits))
    if proc.returncode != 0:
        return commits
    return tuple(c for c, line in zip(commits, proc.stdout.splitlines(), strict=False) if line.endswith(" missing"))


def _clean(checkout: Path) -> None:
    """Drop what a previous task left (skipped when its commit left the tree clean: one process less)."""
    clean_mark = checkout / ".git" / "codeswarm-clean"
    if clean_mark.exists():
        clean_mark.unlink()
        return
    if (checkout / ".git" / "MERGE_HEAD").exists():
        git(checkout, "merge", "--abort", check=False)
    git(checkout, "clean", "-q", "-fdx")


def tidy(checkout: Path) -> None:
    """Make the work tree clean for the next task now (run while the branch is pushed, off the next
    task's critical path): what verify built is removed and the clean mark saves the next checkout a
    `git clean`."""
    clean_mark = checkout / ".git" / "codeswarm-clean"
    if clean_mark.exists():
        return
    git(checkout, "clean", "-q", "-fdx")
    clean_mark.write_text("tidy")


def conflicted_files(checkout: Path) -> tuple[str, ...]:
    out = git(checkout, "diff", "--name-only", "--diff-filter=U").stdout
    return tuple(sorted(f for f in out.splitlines() if f))


def start_branch(checkout: Path, branch: str, start: str, merges: tuple[str, ...] = (),
                 allow_conflicts: bool = False) -> MergeConflict | None:
    """Check out a fresh `branch` at start, then merge each of merges.

    `start` and `merges` are the origin's branch names (as fetched) or commit shas. A conflict
    raises GitError unless allow_conflicts: then the markers stay in the work tree (for an agent to
    resolve) and the conflict is returned.
    """
    _clean(checkout)
    git(checkout, "checkout", "-q", "-f", "-B", branch, _rev(start))
    for other in merges:
        proc = git(checkout, *_IDENTITY, "merge", "-q", "--no-ff", "--no-edit", "-m",
                   f"codeswarm: merge {other}", _rev(other), check=False)
        if proc.returncode == 0:
            continue
        files = conflicted_files(checkout)
        if not files:
            raise GitError(f"git merge of {other} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        if allow_conflicts:
            return MergeConflict(other, files)
        git(checkout, "merge", "--abort", check=False)
        raise GitError(f"merging {other} into {branch} conflicts in {', '.join(files)}")
    return None


def _rev(name: str) -> str:
    return name if SHA.fullmatch(name) else f"refs/remotes/origin/{name}"


def task_checkout(repo: str, checkout: Path, branch: str, start: str, merges: tuple[str, ...],
                  start_commit: str | None = None, merge_commits: tuple[str, ...] = (),
                  allow_conflicts: bool = False) -> MergeConflict | None:
    """A task's checkout: `branch` at its dependencies' merged result, with as few git processes as
    the clone allows: by commit (no fetch) when every commit is readable, else fetch the branches."""
    refs = (start, *merges)
    commits = (start_commit, *merge_commits) if start_commit and len(merge_commits) == len(merges) else ()
    prepare_checkout(repo, checkout, refs, fetch=not commits)
    if commits:
        for attempt in (1, 2):
            names = dict(zip(commits, refs, strict=True))
            try:
                if merges and not allow_conflicts:  # the merged commit without touching the work tree, then one checkout
                    return start_branch(checkout, branch, merged_commit(checkout, branch, commits, names))
                conflict = start_branch(checkout, branch, commits[0], commits[1:], allow_conflicts)
                return conflict and MergeConflict(names.get(conflict.branch, conflict.branch), conflict.files)
            except GitError as exc:
                if not missing_commits(checkout, commits):  # a real failure (a conflict): in branch names
                    raise GitError(re.sub(SHA, lambda m: names.get(m.group(0), m.group(0)), str(exc))) from None
            if attempt == 1:
                fetch_refs(checkout, refs)  # a clone of a URL that has not seen these commits yet
    return start_branch(checkout, branch, start, merges, allow_conflicts)


def merged_commit(checkout: Path, branch: str, commits: tuple[str, ...], names: dict[str, str]) -> str:
    """The commit merging commits[1:] into commits[0] in order (`git merge-tree --write-tree` +
    `commit-tree`: no index or work tree, and no `git stash create` that `git merge` starts); a
    conflict raises GitError naming the branch and the files."""
    head = commits[0]
    for other in commits[1:]:
        proc = git(checkout, "merge-tree", "--write-tree", "--name-only", "--no-messages", head, other, check=False)
        lines = proc.stdout.splitlines()
        if proc.returncode not in (0, 1) or not lines or not SHA.fullmatch(lines[0].strip()):
            raise GitError(f"git merge-tree of {names.get(other, other)} failed: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:] or f'exit {proc.returncode}'}")
        if proc.returncode == 1:
            files = sorted({f for f in lines[1:] if f})
            raise GitError(f"merging {names.get(other, other)} into {branch} conflicts in {', '.join(files)}")
        head = git(checkout, *_IDENTITY, "commit-tree", lines[0].strip(), "-p", head, "-p", other,
                   "-m", f"codeswarm: merge {names.get(other, other)}").stdout.strip()
    return head


def commit_all(checkout: Path, message: str) -> str:
    """Commit everything in the work tree (also what the agent left uncommitted or unmerged); the new HEAD."""
    git(checkout, "add", "-A")
    git(checkout, *_IDENTITY, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    sha = head(checkout)
    (checkout / ".git" / "codeswarm-clean").write_text(sha)  # nothing untracked is left behind
    return sha


def head(checkout: Path) -> str:
    """HEAD's commit, read from the ref file when it is a loose ref (no git process), else by git."""
    try:
        ref = (checkout / ".git" / "HEAD").read_text().strip()
        if ref.startswith("ref: refs/heads/"):
            sha = (checkout / ".git" / ref[5:]).read_text().strip()
            if SHA.fullmatch(sha):
                return sha
    except (OSError, ValueError):
        pass  # a packed or odd ref: git knows
    return git(checkout, "rev-parse", "HEAD").stdout.strip()


def push(checkout: Path, branch: str) -> None:
    """Force: a retried task or a resumed project replaces its own codeswarm/ branch, nothing else."""
    if not branch.startswith(BRANCH_PREFIX + "/"):
        raise GitError(f"refusing to push to {branch!r}: only {BRANCH_PREFIX}/ branches are written")
    # A repo on a path is served by a local receive-pack: skip its `gc --auto` (one process less per
    # task; a URL's server decides for itself, and some allow no other command).
    local = ["--receive-pack=git -c receive.autogc=false receive-pack"] if _origin_is_local(checkout) else []
    git(checkout, "push", "-q", "--force", *local, "origin", f"HEAD:refs/heads/{branch}")


def _origin_is_local(checkout: Path) -> bool:
    try:
        return is_local_repo((checkout / ".git" / "codeswarm-origin").read_text())
    except OSError:
        return False


def run_verify(command: str, cwd: Path, timeout: float) -> tuple[bool, str]:
    """Run a verify command in the task's checkout; (passed, the tail of its combined output). In its
    own session, under the current GitStop like a git call (a stop kills it: GitStopped)."""
    (cwd / ".git" / "codeswarm-clean").unlink(missing_ok=True)  # verify may leave build output behind
    try:
        proc, stop, mark = gitproc.spawn(["bash", "-c", command], {**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                                         session=True, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
    except OSError as exc:
        return False, f"[cannot run verify: {exc}]"
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        gitproc.kill_group(proc.pid)  # the whole group: a verify's children must not outlive it
        gitproc.kill_marked(gitproc.GIT_MARK, mark)  # and what left it (setsid) would hold the pipe open
        raw, _ = proc.communicate()
        return False, tail_text(raw or b"") + f"\n[verify timed out after {timeout:.0f} s]"
    finally:
        gitproc.release(proc, stop)
    if stop is not None and stop.stopped and proc.returncode < 0:
        raise GitStopped("verify was stopped (killed with its session)")
    out = tail_text(raw or b"")
    if proc.returncode != 0:
        out += f"\n[verify exited with {proc.returncode}]"
    return proc.returncode == 0, out


def changed_files(checkout: Path, since: str) -> list[str]:
    """Files that differ between commit `since` and HEAD (renames as a delete and an add)."""
    out = git(checkout, "diff", "--name-only", "--no-renames", "-z", since, "HEAD").stdout
    return [f for f in out.split("\0") if f]


def tail_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= OUTPUT_TAIL else "[...]" + text[-OUTPUT_TAIL:]


@dataclass(frozen=True)
class IntegrationStep:
    """The outcome of merging task branches into the integration branch."""

    merged: tuple[str, ...]             # branches merged by this call, in order
    commit: str                         # head of the integration branch as pushed
    conflict: MergeConflict | None      # the first branch that does not merge cleanly (not merged)


def integrate(repo: str, workdir: Path, integration: str, start: str, branches: tuple[str, ...]) -> IntegrationStep:
    """Merge branches (topological order) onto `start` as `integration`, stopping at the first conflict.

    What merged cleanly is pushed either way, so a conflict can be handed to an agent on top of it.
    """
    prepare_checkout(repo, workdir)
    start_branch(workdir, integration, start)
    merged: list[str] = []
    conflict = None
    for branch in branches:
        proc = git(workdir, *_IDENTITY, "merge", "-q", "--no-ff", "--no-edit", "-m", f"codeswarm: integrate {branch}",
                   f"refs/remotes/origin/{branch}", check=False)
        if proc.returncode != 0:
            files = conflicted_files(workdir)
            git(workdir, "merge", "--abort", check=False)
            if not files:
                raise GitError(f"git merge of {branch} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
            conflict = MergeConflict(branch, files)
            break
        merged.append(branch)
    push(workdir, integration)
    return IntegrationStep(tuple(merged), head(workdir), conflict)
