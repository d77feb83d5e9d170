#!/usr/bin/env python3
"""Starts the `bqemulator` BigQuery emulator (PyPI) without its DuckDB extension downloads.

bqemulator's engine runs `INSTALL spatial; LOAD spatial` at start-up and refuses to start when
that fails (GEOGRAPHY support), and tries `INSTALL avro` (best-effort). Both fetch binaries from
extensions.duckdb.org. KKTIX Autopilot uses neither GEOGRAPHY nor Avro, so this launcher turns
the spatial load into a no-op and the format extensions off, then hands over to the normal CLI.

Usage (any `bqemulator start` flag works):

    python3 scripts/bqemulator-launch.py --rest-port 9050 --grpc-port 0 --project test-project

Then `BIGQUERY_API_BASE=http://127.0.0.1:9050 STORE=bigquery:test-project ...`.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    # Checked by bqemulator's Settings (env prefix BQEMU_): no `INSTALL avro` either.
    os.environ.setdefault("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")

    from bqemulator.storage import engine

    def _skip_spatial(self) -> None:  # noqa: ANN001 — mirrors DuckDBEngine._load_spatial
        """GEOGRAPHY is not used here: no download of the spatial extension."""

    engine.DuckDBEngine._load_spatial = _skip_spatial  # type: ignore[method-assign]

    from bqemulator.cli import main as cli

    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        args = ["start", *args]
    cli.main(args=args, prog_name="bqemulator")


if __name__ == "__main__":
    main()
