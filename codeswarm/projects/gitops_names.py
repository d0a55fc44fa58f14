"""Branch names of a project (pure; shared by the core and the git shell)."""

BRANCH_PREFIX = "codeswarm"


def task_branch(project_id: str, task_id: str) -> str:
    return f"{BRANCH_PREFIX}/{project_id}/{task_id}"


def integration_branch(project_id: str) -> str:
    return f"{BRANCH_PREFIX}/{project_id}/integration"
