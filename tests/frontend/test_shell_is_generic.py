"""frontend/ is the shell (layout, nav, auth pages, overview, node page frame, shared JS); every domain's UI lives in
its integration's folder."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
# Names of the domains whose pages moved into their integrations, and of their things.
DOMAIN_WORDS = re.compile(r"\b(docker|proxmox|pve|vmid|tcp_probe|compose|containers|guests?)\b", re.IGNORECASE)
TEXT_SUFFIXES = {".py", ".html", ".js", ".css", ".md", ".svg"}
# Roost itself run from a Compose file (the join-token page's install snippet) is the install feature, not the docker domain.
ROOST_IN_A_CONTAINER = re.compile(r"Docker Compose|a Compose service|answer\.compose|(new-)?token-compose", re.IGNORECASE)


def offenders(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES or "vendor" in path.parts or "__pycache__" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = DOMAIN_WORDS.search(ROOST_IN_A_CONTAINER.sub("", line)) or DOMAIN_WORDS.search(path.stem)
            if match:
                found.append(f"{path.relative_to(root)}:{number}: {match.group(0)!r} in {line.strip()[:100]!r}")
                break
    return found


def test_frontend_holds_nothing_domain_specific() -> None:
    found = offenders(FRONTEND)
    assert not found, "domain-specific code in the dashboard shell; move it into the integration's hub half:\n" + "\n".join(found)


def test_the_moved_pages_live_in_their_integrations() -> None:
    for domain, files in {
        "docker": ["hub.py", "pages.py", "templates/page.html", "templates/container.html", "static/js/containers.js", "static/containers.css"],
        "proxmox": ["hub.py", "pages.py", "templates/page.html", "templates/guest.html", "static/js/proxmox.js", "static/proxmox.css"],
    }.items():
        for name in files:
            assert (REPO / "integrations" / domain / name).is_file(), f"integrations/{domain}/{name} is missing"


def test_the_check_finds_a_domain_name(tmp_path: Path) -> None:
    (tmp_path / "views.py").write_text("x = 1\n")
    (tmp_path / "page.html").write_text("<p>All your Proxmox guests</p>\n")
    (tmp_path / "containers.css").write_text(".x {}\n")
    found = offenders(tmp_path)
    assert len(found) == 2 and any("page.html:1" in f for f in found) and any("containers.css" in f for f in found)
