"""Orchestrated projects: a task graph run by swarms, landing as verified git branches (docs/PROJECTS.md)."""
