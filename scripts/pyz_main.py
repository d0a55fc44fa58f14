# The .pyz's __main__.py (put in place by scripts/pyz_fastpath.py at build time).
#
# shiv's own bootstrap imports zipfile, compileall, hashlib, subprocess, shutil and more, and reads
# the archive's central directory on every start only to find that its site-packages was unpacked
# before: ~40 ms of every `codeswarm list` and router start (docs/BENCHMARKS.md, issue 13). When
# shiv has already unpacked this very build and no SHIV_* variable asks for anything else, this file
# does what shiv's bootstrap then does (put that site-packages on sys.path ahead of the
# interpreter's own, run the entry point) with os and sys only; in every other case (first run,
# SHIV_ROOT, SHIV_FORCE_EXTRACT, SHIV_ENTRY_POINT, ...) it hands over to shiv's bootstrap unchanged.
import os
import sys

BUILD_ID = "@BUILD_ID@"  # filled in at build time from the archive's environment.json


def _unpacked_site_packages():
    if any(key.startswith("SHIV_") for key in os.environ) or not sys.argv or not sys.argv[0]:
        return None
    # shiv: ~/.shiv/<resolved archive file name>_<build id>/site-packages, moved into place
    # atomically once fully unpacked and compiled, so its existence is the whole check.
    name = os.path.basename(os.path.realpath(sys.argv[0]))
    site_packages = os.path.join(os.path.expanduser("~/.shiv"), f"{name}_{BUILD_ID}", "site-packages")
    return site_packages if os.path.isdir(site_packages) else None


def _main():
    site_packages = _unpacked_site_packages()
    if site_packages is None:
        import _bootstrap

        _bootstrap.bootstrap()
        return
    # shiv places its site-packages before the first site-packages/dist-packages entry of sys.path
    index = next((i for i, part in enumerate(sys.path)
                  if os.path.basename(part.rstrip(os.sep)) in ("site-packages", "dist-packages")), len(sys.path))
    sys.path.insert(index, site_packages)
    from codeswarm.entry import main

    sys.exit(main())


_main()
