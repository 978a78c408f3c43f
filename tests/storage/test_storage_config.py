"""Configurations: the shipped PostgreSQL file and the local layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tiled.config import parse_configs

from panda_flyscan.app.cli.tiled import tiled
from panda_flyscan.storage import (
    TiledServiceError,
    local_tiled_config,
    render_postgres_config,
    shipped_postgres_config_path,
)
from panda_flyscan.storage.config import load_config


def test_shipped_postgres_config_is_the_generated_one():
    shipped = shipped_postgres_config_path().read_text()
    assert shipped == render_postgres_config()
    result = CliRunner().invoke(tiled, ["config", "postgres"])
    assert result.exit_code == 0
    assert result.output == shipped


def test_shipped_postgres_config_parses_with_environment(monkeypatch, tmp_path: Path):
    readable = tmp_path / "panda"
    readable.mkdir()
    env = {
        "PANDA_TILED_CATALOG_URI": "postgresql://tiled:pw@db:5432/tiled_catalog",
        "PANDA_TILED_STORAGE_URI": "postgresql://tiled:pw@db:5432/tiled_storage",
        "PANDA_TILED_DATA_DIR": str(tmp_path / "files"),
        "PANDA_TILED_API_KEY": "abc123",
        "PANDA_TILED_READABLE_DIR": str(readable),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Tiled's own parser (what `tiled serve config` uses) accepts the file...
    parsed = parse_configs(shipped_postgres_config_path())
    (tree,) = parsed.trees or []
    args = tree.args or {}
    assert args["uri"] == env["PANDA_TILED_CATALOG_URI"]
    assert args["writable_storage"] == [
        env["PANDA_TILED_DATA_DIR"],
        env["PANDA_TILED_STORAGE_URI"],
    ]
    assert args["readable_storage"] == [str(readable)]
    assert parsed.authentication.single_user_api_key == "abc123"
    assert parsed.uvicorn == {"host": "127.0.0.1", "port": 8000}
    # ...and so do our checks.
    load_config(shipped_postgres_config_path())


def test_unset_placeholders_are_named(monkeypatch):
    for key in (
        "PANDA_TILED_CATALOG_URI",
        "PANDA_TILED_STORAGE_URI",
        "PANDA_TILED_DATA_DIR",
    ):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(TiledServiceError, match="PANDA_TILED_CATALOG_URI"):
        load_config(shipped_postgres_config_path())


def test_local_config_layout(tmp_path: Path):
    extra = tmp_path / "panda"
    config = local_tiled_config(tmp_path / "d", api_key="k1", readable=[extra])
    catalog = config["catalog"]
    assert catalog["uri"] == f"sqlite:///{tmp_path / 'd' / 'catalog.db'}"
    assert catalog["writable_storage"] == [
        str(tmp_path / "d" / "data"),
        f"duckdb:///{tmp_path / 'd' / 'tables.duckdb'}",
    ]
    assert catalog["readable_storage"] == [str(tmp_path / "d" / "external"), str(extra)]
    assert config["authentication"] == {"single_user_api_key": "k1"}
    assert config["uvicorn"]["host"] == "127.0.0.1"


def test_config_cli_writes_a_concrete_file(tmp_path: Path):
    out = tmp_path / "tiled.yml"
    result = CliRunner().invoke(
        tiled,
        [
            "config",
            "postgres",
            "--catalog-uri",
            "postgresql://u@h/c",
            "--storage-uri",
            "postgresql://u@h/s",
            "--readable",
            "/data/a",
            "--readable",
            "/data/b",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert (
        '"postgresql://u@h/c"' in text
        and '- "/data/a"' in text
        and '- "/data/b"' in text
    )
