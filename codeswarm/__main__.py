"""Entry point for `python -m codeswarm` and for codeswarm.pyz."""

from codeswarm.entry import main

if __name__ == "__main__":
    main()
