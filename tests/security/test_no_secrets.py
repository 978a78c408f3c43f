"""No secret in the repository but the documented local-development default.

Every file git tracks is searched for private keys and cloud tokens; the
shipped code, configuration and docs for credentials written as literals
(API keys, passwords in connection URIs). The allowed ones are listed here,
each with why: the local-development key ``secret`` (docs/storage.md), the
placeholders the shipped configuration expands from the environment, and the
benchmark's throw-away key for the Tiled it starts on loopback.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Material that is a secret wherever it appears.
SECRET_MATERIAL = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),
}
#: A credential given as a literal: ``api_key = "..."``, ``password: '...'``.
LITERAL = re.compile(
    r"(?i)\b(api_key|apikey|password|passwd|token|secret)\b[\"']?\s*[:=]\s*"
    r"[\"']([^\"'$]{3,})[\"']"
)
#: A password inside a connection URI: ``scheme://user:password@host``.
URI_PASSWORD = re.compile(r"://[A-Za-z0-9_.-]+:([^@\s\"'`/]+)@")
#: Literal values allowed in shipped files, and why.
ALLOWED_LITERALS = {
    "secret": "the documented local-development default (DEFAULT_API_KEY)",
    "bench": "the benchmark's key for the Tiled it starts on loopback and removes",
}
#: URI passwords allowed: placeholders, not passwords.
ALLOWED_URI_PASSWORDS = {"PASSWORD", "password", "..."}


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout ({err}): nothing to list")
    paths = [ROOT / p for p in listed.decode().split("\0") if p]
    return [p for p in paths if p.is_file()]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary (images): not searched


def _shipped(path: Path) -> bool:
    """Code, configuration and docs a user installs or reads (not tests)."""
    rel = path.relative_to(ROOT).parts
    return rel[0] in {"src", "sim_ioc", "docs", "scripts"} or len(rel) == 1


def test_no_private_keys_or_tokens_anywhere() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {what}"
        for path in _tracked_files()
        if (text := _text(path)) is not None
        for what, pattern in SECRET_MATERIAL.items()
        for m in pattern.finditer(text)
    ]
    assert not found, "secret material in the repository:\n" + "\n".join(found)


def test_shipped_files_hold_only_the_documented_credentials() -> None:
    found: list[str] = []
    files = [p for p in _tracked_files() if _shipped(p)]
    assert any(p.name == "config.py" for p in files), "the search saw no code"
    for path in files:
        text = _text(path)
        if text is None:
            continue
        for line_no, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{line_no}"
            for m in LITERAL.finditer(line):
                if m.group(2) not in ALLOWED_LITERALS:
                    found.append(f"{where}: {m.group(1)} = {m.group(2)!r}")
            for m in URI_PASSWORD.finditer(line):
                if m.group(1) not in ALLOWED_URI_PASSWORDS:
                    found.append(f"{where}: a password in a URI ({m.group(0)})")
    assert not found, (
        "credentials written into shipped files (read them from the environment, "
        "as the shipped Tiled configuration does):\n" + "\n".join(found)
    )


def test_the_search_finds_what_it_looks_for() -> None:
    """The patterns catch what they are for (else the tests above prove nothing)."""
    assert LITERAL.search('api_key = "hunter22"')
    assert LITERAL.search("password: 'letmein'")
    assert not LITERAL.search('api_key = "${PANDA_TILED_API_KEY}"')
    assert URI_PASSWORD.search("postgresql://tiled:hunter22@db:5432/x")
    # Assembled, so this file holds no key header itself.
    header = "-----BEGIN RSA " + "PRIVATE KEY-----"
    assert SECRET_MATERIAL["private key"].search(header)
