"""The ``llmsurgeon scan`` command."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from llmsurgeon_core.storage import atomic_write_json, atomic_write_text

from .config import load_scan_config
from .environment import describe_environment, render_environment
from .plot import plot_scan
from .scan import Scan
from .table import render_markdown

__all__ = ["scan_command"]

RESULT_FILE = "scan.json"
MARKDOWN_FILE = "scan.md"
PLOT_FILE = "scan.png"


def _command_line(config: Path | None, quick: bool, overrides: tuple[str, ...]) -> str:
    words = ["llmsurgeon", "scan"]
    if config is not None:
        words.append(str(config))
    if quick:
        words.append("--quick")
    for override in overrides:
        words += ["--set", override]
    return shlex.join(words)


@click.command("scan")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="Apply the config's `quick` overrides.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scan config value, e.g. --set draw.count=3.",
)
def scan_command(config: Path | None, quick: bool, overrides: tuple[str, ...]) -> None:
    """Train small targets at known mixtures, audit each, and tabulate the errors.

    CONFIG is a scan config (no CONFIG: the packaged coarse scan). Every target,
    its samples, each calibration and each audit are cached in scan_dir, so a
    rerun with one more solver only solves. Writes scan.json, scan.md and
    scan.png into scan_dir and prints the Markdown tables.
    """
    started = time.perf_counter()
    scan_config = load_scan_config(config, quick=quick, overrides=list(overrides))
    scan = Scan(scan_config, on_message=lambda message: click.echo(message, err=True))
    result = scan.run()
    seconds = time.perf_counter() - started

    scan_dir = Path(scan_config.scan_dir)
    environment = describe_environment()
    record = {**result.to_json(), "environment": environment, "seconds": seconds}
    atomic_write_json(scan_dir / RESULT_FILE, record)
    plot_path = plot_scan(result, scan_dir / PLOT_FILE)
    header = render_environment(
        _command_line(config, quick, overrides), scan_config, environment, seconds, record["counts"]
    )
    tables = render_markdown(result)
    title, _, body = tables.partition("\n")
    markdown = f"{title}\n\n{header}\n{body}"
    atomic_write_text(scan_dir / MARKDOWN_FILE, markdown)
    click.echo(markdown)
    click.echo(f"counts: {json.dumps(record['counts'])}", err=True)
    click.echo(f"tables: {scan_dir / MARKDOWN_FILE}, plot: {plot_path}", err=True)
