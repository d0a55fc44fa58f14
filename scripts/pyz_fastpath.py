"""Replace the __main__.py of a shiv-built .pyz with scripts/pyz_main.py (the start-up fast path).

    python scripts/pyz_fastpath.py dist/codeswarm.pyz.tmp

The archive is rewritten member by member (same order, names, dates and compression), with the
shebang line shiv put in front; only __main__.py differs (and is stored uncompressed). The fast path skips site.addsitedir, so
a bundled .pth file (which it would not run) fails the build instead of being silently ignored.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

MAIN = Path(__file__).resolve().parent / "pyz_main.py"


def rewrite(pyz: Path) -> None:
    raw = pyz.read_bytes()
    start = raw.find(b"PK\x03\x04")
    shebang = raw[:start]
    with zipfile.ZipFile(pyz) as src:
        env = json.loads(src.read("environment.json"))
        if env.get("entry_point") != "codeswarm.entry:main" or not env.get("build_id"):
            raise SystemExit(f"{pyz}: unexpected shiv environment.json: {env}")
        pth = [n for n in src.namelist() if n.startswith("site-packages/") and n.count("/") == 1 and n.endswith(".pth")]
        if pth:
            raise SystemExit(f"{pyz}: bundles .pth files the fast path would not run: {pth}")
        main = MAIN.read_text().replace("@BUILD_ID@", env["build_id"])
        if "@BUILD_ID@" in main or env["build_id"] not in main:
            raise SystemExit("scripts/pyz_main.py: the @BUILD_ID@ placeholder is missing")
        out = pyz.with_name(pyz.name + ".fast")
        with open(out, "wb") as f:
            f.write(shebang)
            with zipfile.ZipFile(f, "w") as dst:
                for info in src.infolist():
                    if info.filename == "__main__.py":  # stored: reading it needs no zlib (an extension module to load)
                        info.compress_type = zipfile.ZIP_STORED
                        dst.writestr(info, main.encode(), compress_type=zipfile.ZIP_STORED)
                    else:
                        dst.writestr(info, src.read(info), compress_type=info.compress_type)
    out.chmod(pyz.stat().st_mode)
    out.replace(pyz)


if __name__ == "__main__":
    rewrite(Path(sys.argv[1]))
