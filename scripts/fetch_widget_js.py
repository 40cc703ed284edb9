"""Fetch the JavaScript that renders ipywidgets in the built book, into ``_static/widgets/``.

The book's pages show widget explorers without a kernel: the widget state is embedded in
the HTML, and two scripts draw it - RequireJS (the module loader the widgets' embed script
expects) and the embed script of ``@jupyter-widgets/html-manager``. myst-nb loads both from
CDNs by default; the book serves these committed copies instead (``nb_ipywidgets_js`` in
``_config.yml``), so ``make book`` needs no npm and a page works offline.

Run this to change a version (the only place they are set) and commit what it writes::

    python scripts/fetch_widget_js.py

It downloads each package's tarball from the npm registry, checks it against the registry's
``dist.integrity`` (SHA-512), copies the files the pages need, and writes ``VERSIONS.json``
(versions, licences, the SHA-256 of every file) and ``LICENSES.md``. Needs the network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_static" / "widgets"
REGISTRY = "https://registry.npmjs.org"
#: package -> (version, {file in the tarball: name in _static/widgets}). html-manager 1.0.x
#: is the embed script of ipywidgets 8 (requirements.txt pins ipywidgets 8.1).
PACKAGES = {
    "@jupyter-widgets/html-manager": ("1.0.15", {
        "package/dist/embed-amd.js": "embed-amd.js",
        "package/dist/embed.js.LICENSE.txt": "embed-amd.THIRD-PARTY.txt",
        # Font Awesome, which the embed script's CSS loads by name for icons (woff2 only:
        # every browser that runs the embed script reads it)
        "package/dist/1551f4f60c37af51121f.woff2": "1551f4f60c37af51121f.woff2",
        "package/dist/7a3337626410ca2f4071.woff2": "7a3337626410ca2f4071.woff2",
        "package/dist/d878b0a6a1144760244f.woff2": "d878b0a6a1144760244f.woff2",
    }),
    "requirejs": ("2.3.8", {
        "package/require.js": "require.js",
        "package/README.md": "requirejs.README.md",
    }),
}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def tarball(name: str, version: str) -> tuple[bytes, dict]:
    """The package's tarball, checked against the registry's SHA-512, and its metadata."""
    meta = json.loads(fetch(f"{REGISTRY}/{name.replace('/', '%2f')}/{version}"))
    data = fetch(meta["dist"]["tarball"])
    algorithm, _, expected = meta["dist"]["integrity"].partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        sys.exit(f"{name}@{version}: the tarball does not match the registry's {algorithm}")
    return data, meta


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name, (version, files) in PACKAGES.items():
        data, meta = tarball(name, version)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            written = {}
            for inside, target in files.items():
                if inside not in members:
                    sys.exit(f"{name}@{version}: no {inside} in the tarball")
                content = tar.extractfile(members[inside]).read()
                (OUT / target).write_bytes(content)
                written[target] = hashlib.sha256(content).hexdigest()
        versions[name] = {"version": version, "license": meta.get("license"),
                          "tarball": meta["dist"]["tarball"],
                          "integrity": meta["dist"]["integrity"], "files": written}
        print(f"{name}@{version} ({meta.get('license')}): {', '.join(written)}")
    # the html-manager tarball carries no licence file; its package.json says BSD-3-Clause and
    # names the ipywidgets repository, whose licence the ipywidgets package installs
    from importlib.metadata import distribution

    licence = next(f for f in distribution("ipywidgets").files if f.name == "LICENSE")
    (OUT / "html-manager.LICENSE.txt").write_text(Path(licence.locate()).read_text())
    (OUT / "VERSIONS.json").write_text(json.dumps(versions, indent=1) + "\n")
    lines = ["# Third-party JavaScript in this folder", "",
             "Fetched by `scripts/fetch_widget_js.py` from the npm registry; unchanged.", ""]
    for name, info in versions.items():
        lines.append(f"- `{name}` {info['version']}, licence {info['license']}: "
                     f"{', '.join(f'`{f}`' for f in info['files'])}")
    lines += ["", "The licence texts: `html-manager.LICENSE.txt` (the ipywidgets repository's,",
              "which html-manager's package.json names), the notices of what its bundle",
              "contains in `embed-amd.THIRD-PARTY.txt`; RequireJS is MIT-licensed, its notice",
              "heads `require.js`."]
    (OUT / "LICENSES.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
