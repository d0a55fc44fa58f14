from tests.conftest import cs, pyz  # noqa: F401  (the fixtures of the top-level conftest)
