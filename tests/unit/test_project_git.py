"""gitops against real git repositories in tmp dirs."""

import subprocess

import pytest

from codeswarm.projects import gitops
from codeswarm.projects.gitops import GitError


def sh(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def user_repo(tmp_path):
    """A user's non-bare repo on main, with an uncommitted change that must survive."""
    repo = tmp_path / "user"
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("hello\n")
    sh(repo, "add", "README")
    sh(repo, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "init")
    (repo / "README").write_text("hello\nlocal edit\n")
    return repo


def snapshot(repo):
    return (sh(repo, "rev-parse", "HEAD"), sh(repo, "symbolic-ref", "HEAD"), sh(repo, "status", "--porcelain"),
            (repo / "README").read_text())


def run_task(repo, checkout, branch, start, merges=(), write=None):
    gitops.prepare_checkout(str(repo), checkout)
    gitops.start_branch(checkout, branch, start, merges)
    for name, text in (write or {}).items():
        (checkout / name).write_text(text)
    sha = gitops.commit_all(checkout, f"task {branch}")
    gitops.push(checkout, branch)
    return sha


def test_task_branches_from_deps_and_integration(user_repo, tmp_path):
    before = snapshot(user_repo)
    a = gitops.task_branch("p1", "a")
    b = gitops.task_branch("p1", "b")
    j = gitops.task_branch("p1", "join")
    run_task(user_repo, tmp_path / "n0", a, "main", write={"a.txt": "a\n"})
    run_task(user_repo, tmp_path / "n1", b, "main", write={"b.txt": "b\n"})
    # the join starts from a merged with b, on a node whose clone predates both branches
    sha = run_task(user_repo, tmp_path / "n0", j, a, merges=(b,), write={"j.txt": "j\n"})
    files = sh(user_repo, "ls-tree", "--name-only", j).split()
    assert files == ["README", "a.txt", "b.txt", "j.txt"]
    assert gitops.remote_heads(str(user_repo), "codeswarm/p1/")[j] == sha
    step = gitops.integrate(str(user_repo), tmp_path / "integ", gitops.integration_branch("p1"), "main", (a, b, j))
    assert step.conflict is None and step.merged == (a, b, j)
    assert sh(user_repo, "rev-parse", gitops.integration_branch("p1")) == step.commit
    assert snapshot(user_repo) == before, "the user's branch, HEAD and work tree are untouched"


def test_worker_commits_what_the_agent_left(user_repo, tmp_path):
    co = tmp_path / "n0"
    gitops.prepare_checkout(str(user_repo), co)
    gitops.start_branch(co, "codeswarm/p/t", "main")
    (co / "new.txt").write_text("x")
    (co / "README").write_text("changed\n")
    gitops.commit_all(co, "t")
    assert sh(co, "status", "--porcelain") == ""
    assert set(sh(co, "show", "--name-only", "--format=", "HEAD").split()) == {"new.txt", "README"}
    # a second task on the same node starts clean
    gitops.start_branch(co, "codeswarm/p/u", "main")
    assert not (co / "new.txt").exists() and (co / "README").read_text() == "hello\n"


def test_conflicts_in_integration_and_between_dependencies(user_repo, tmp_path):
    a, b = gitops.task_branch("p", "a"), gitops.task_branch("p", "b")
    run_task(user_repo, tmp_path / "n0", a, "main", write={"README": "from a\n"})
    run_task(user_repo, tmp_path / "n1", b, "main", write={"README": "from b\n"})
    integ = gitops.integration_branch("p")
    step = gitops.integrate(str(user_repo), tmp_path / "i", integ, "main", (a, b))
    assert step.merged == (a,) and step.conflict == gitops.MergeConflict(b, ("README",))
    assert sh(user_repo, "show", f"{integ}:README") == "from a", "what merged cleanly is pushed"
    co = tmp_path / "n2"
    gitops.prepare_checkout(str(user_repo), co)
    with pytest.raises(GitError, match="conflicts in README"):
        gitops.start_branch(co, "codeswarm/p/c", a, (b,))
    # an integration task: the markers stay for the agent, the worker commits the resolution
    conflict = gitops.start_branch(co, integ, integ, (b,), allow_conflicts=True)
    assert conflict == gitops.MergeConflict(b, ("README",))
    assert "<<<<<<<" in (co / "README").read_text()
    (co / "README").write_text("from a\nfrom b\n")
    gitops.commit_all(co, "resolve")
    gitops.push(co, integ)
    step = gitops.integrate(str(user_repo), tmp_path / "i", integ, integ, (a, b))
    assert step.conflict is None
    assert sh(user_repo, "show", f"{integ}:README") == "from a\nfrom b"


def test_check_repo_errors(user_repo, tmp_path):
    assert len(gitops.check_repo(str(user_repo), "main")) == 40
    with pytest.raises(GitError, match="no branch 'dev'"):
        gitops.check_repo(str(user_repo), "dev")
    with pytest.raises(GitError, match="not reachable"):
        gitops.check_repo(str(tmp_path / "missing"), "main")
    with pytest.raises(GitError, match="not reachable"):
        gitops.check_repo("--upload-pack=touch /tmp/pwned", "main")
    with pytest.raises(GitError, match="only codeswarm/"):
        gitops.push(user_repo, "main")


def test_bare_repo_on_a_shared_dir(user_repo, tmp_path):
    bare = tmp_path / "shared" / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(user_repo), str(bare)], check=True)
    sha = run_task(bare, tmp_path / "n0", "codeswarm/p/a", "main", write={"a": "1"})
    assert sh(bare, "rev-parse", "codeswarm/p/a") == sha


def test_verify_captures_output_and_exit(tmp_path):
    ok, out = gitops.run_verify("echo fine; test -f x", tmp_path, 10)
    assert not ok and "fine" in out and "exited with 1" in out
    (tmp_path / "x").write_text("")
    assert gitops.run_verify("test -f x", tmp_path, 10) == (True, "")
    ok, out = gitops.run_verify("echo started; sleep 5", tmp_path, 0.5)
    assert not ok and "timed out" in out
    ok, out = gitops.run_verify("head -c 100000 /dev/zero | tr '\\0' y", tmp_path, 10)
    assert ok and len(out) <= gitops.OUTPUT_TAIL + 10


def test_what_verify_leaves_behind_never_reaches_the_next_task(user_repo, tmp_path):
    co = tmp_path / "n0"
    gitops.prepare_checkout(str(user_repo), co)
    gitops.start_branch(co, "codeswarm/p/a", "main")
    gitops.commit_all(co, "a")
    assert gitops.run_verify("mkdir -p build && touch build/out.o", co, 10)[0]
    gitops.start_branch(co, "codeswarm/p/b", "main")
    assert not (co / "build").exists()
    # without a verify the commit left the tree clean and the next start skips `git clean`
    gitops.commit_all(co, "b")
    gitops.start_branch(co, "codeswarm/p/c", "main", ())
    assert sh(co, "status", "--porcelain") == ""


def test_a_shared_clone_checks_out_by_commit_without_fetching(user_repo, tmp_path):
    base = sh(user_repo, "rev-parse", "main")
    a, b, c = (gitops.task_branch("p", x) for x in "abc")
    n0, n1 = tmp_path / "n0", tmp_path / "n1"
    gitops.task_checkout(str(user_repo), n0, a, "main", (), base)
    gitops.task_checkout(str(user_repo), n1, b, "main", (), base)  # n1's clone predates a and b
    assert (n1 / ".git" / "objects" / "info" / "alternates").exists(), "a repo on a path is cloned --shared"
    (n0 / "a.txt").write_text("a\n")
    sha_a = gitops.commit_all(n0, "a")
    gitops.push(n0, a)
    (n1 / "b.txt").write_text("b\n")
    sha_b = gitops.commit_all(n1, "b")
    gitops.push(n1, b)
    # on n1, c starts at a's commit merged with b's: readable through the shared store, no fetch
    gitops.task_checkout(str(user_repo), n1, c, a, (b,), sha_a, (sha_b,))
    assert sorted(p.name for p in n1.iterdir() if p.name != ".git") == ["README", "a.txt", "b.txt"]
    assert sh(n1, "for-each-ref", f"refs/remotes/origin/{a}") == "", "nothing was fetched"
    assert gitops.head(n1) == sh(n1, "rev-parse", "HEAD")


def test_a_url_clone_fetches_when_it_lacks_a_commit_and_conflicts_name_branches(user_repo, tmp_path):
    url = f"file://{user_repo}"
    base = sh(user_repo, "rev-parse", "main")
    a, b, c = (gitops.task_branch("p", x) for x in "abc")
    n0, n1 = tmp_path / "n0", tmp_path / "n1"
    gitops.task_checkout(url, n1, b, "main", (), base)
    assert not (n1 / ".git" / "objects" / "info" / "alternates").exists()
    gitops.task_checkout(url, n0, a, "main", (), base)
    (n0 / "README").write_text("from a\n")
    sha_a = gitops.commit_all(n0, "a")
    gitops.push(n0, a)
    (n1 / "README").write_text("from b\n")
    sha_b = gitops.commit_all(n1, "b")
    gitops.push(n1, b)
    gitops.task_checkout(url, n1, c, a, (), sha_a)   # n1 never saw a: fetched, then by commit
    assert gitops.head(n1) == sha_a and (n1 / "README").read_text() == "from a\n"
    with pytest.raises(GitError, match=f"merging {b} into {c} conflicts in README"):
        gitops.task_checkout(url, n1, c, a, (b,), sha_a, (sha_b,))


def test_a_url_clone_fetches_the_commits_of_a_merge_it_has_not_seen(user_repo, tmp_path):
    url = f"file://{user_repo}"
    base = sh(user_repo, "rev-parse", "main")
    a, b, j = (gitops.task_branch("p", x) for x in ("a", "b", "j"))
    n0, n1, n2 = tmp_path / "n0", tmp_path / "n1", tmp_path / "n2"
    gitops.task_checkout(url, n2, gitops.task_branch("p", "early"), "main", (), base)  # n2's clone predates a, b
    shas = {}
    for node, branch, name in ((n0, a, "a.txt"), (n1, b, "b.txt")):
        gitops.task_checkout(url, node, branch, "main", (), base)
        (node / name).write_text(name)
        shas[branch] = gitops.commit_all(node, branch)
        gitops.push(node, branch)
    gitops.task_checkout(url, n2, j, a, (b,), shas[a], (shas[b],))
    assert sorted(p.name for p in n2.iterdir() if p.name != ".git") == ["README", "a.txt", "b.txt"]
    assert sh(n2, "log", "-1", "--format=%P%n%s").splitlines() == [f"{shas[a]} {shas[b]}", f"codeswarm: merge {b}"]
