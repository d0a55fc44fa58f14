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
    if not sys.argv or not sys.argv[0]:
        return None
    # shiv: ~/.shiv/<resolved archive file name>_<build id>/site-packages, moved into place
    # atomically once fully unpacked and compiled, so its existence is the whole check.
    name = os.path.basename(os.path.realpath(sys.argv[0]))
    root = os.environ.get("SHIV_ROOT")  # shiv's own: a $NAME value names another variable
    if root and root.startswith("$"):
        root = os.environ.get(root[1:], root[1:])
    site_packages = os.path.join(os.path.expanduser(root or "~/.shiv"), f"{name}_{BUILD_ID}", "site-packages")
    # a root the user chose (SHIV_ROOT, maybe a sticky /tmp) is theirs to judge; what is unpacked in it is checked
    _refuse_foreign(site_packages, check_root=not root)
    if any(key.startswith("SHIV_") for key in os.environ):
        return None
    return site_packages if os.path.isdir(site_packages) else None


def _refuse_foreign(site_packages, check_root):
    """The unpack path is fixed and public (the build id is in the archive): code another user could
    plant or swap there must never run, through this path or shiv's bootstrap (which checks nothing)."""
    uid, gid = os.geteuid(), os.getegid()
    build_dir = os.path.dirname(site_packages)
    for path in ((os.path.dirname(build_dir),) if check_root else ()) + (build_dir, site_packages):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return  # not unpacked yet: shiv's bootstrap creates it, as this user
        # group-writable is fine for the user's own group (umask 002 with user private groups)
        others_write = st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != gid)
        if st.st_uid != uid or others_write or (st.st_mode & 0o170000) != 0o040000:
            sys.stderr.write(f"codeswarm: refusing to run code from {path}: it is not a directory owned by you "
                             "and writable only by you; remove it (another user may have put code there)\n")
            sys.exit(2)


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
