"""Codeswarm: a distributed execution fabric for AI coding agents."""

__version__ = "0.1.0"
