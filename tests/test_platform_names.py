"""No .py file of the core names a wallet platform (issue 13): only worker/providers/ may.

The core reaches a platform through the port and the registry alone, so adding a platform
touches its own package and one registry line. The names checked are every registered kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from worker.providers import registry

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("worker", "bench")  # the shipped code and its benchmarks
ALLOWED = ("worker/providers/",)


def offences(kinds: Iterable[str], files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """`file:line: text` for every line that names one of `kinds` outside ALLOWED."""
    pattern = re.compile("|".join(re.escape(kind) for kind in kinds), re.IGNORECASE)
    found = []
    for path in sorted(files):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_file_outside_the_providers_package_names_a_registered_platform() -> None:
    files = [path for top in SCANNED for path in (ROOT / top).rglob("*.py")]
    assert registry.kinds(), "no platform registered"
    assert offences(registry.kinds(), files) == []


def test_an_offence_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "worker" / "sync").mkdir(parents=True)
    (tmp_path / "worker" / "providers" / "acme").mkdir(parents=True)
    core = tmp_path / "worker" / "sync" / "engine.py"
    core.write_text("x = 1\nprefix = settings.providers.Acme.prefix\n")
    own = tmp_path / "worker" / "providers" / "acme" / "client.py"
    own.write_text("class AcmeClient: ...\n")
    found = offences(["acme"], [core, own], root=tmp_path)
    assert found == ["worker/sync/engine.py:2: prefix = settings.providers.Acme.prefix"]
