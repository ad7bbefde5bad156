"""The ``llmsurgeon`` command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .errors import InvalidInputError, LlmsurgeonError
from .plugin_manager import install, uninstall
from .secrets import install_log_filter, redact

logger = logging.getLogger(__name__)

_CONFIG_ARGUMENT = click.argument(
    "config", required=False, type=click.Path(dir_okay=False, path_type=Path)
)
_SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set sampler.options.n_samples=500.",
)
_RUN_DIR_OPTION = click.option(
    "--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Override run_dir."
)


class _Group(click.Group):
    """Turns library errors into one-line messages and exit codes 2 or 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmsurgeonError as error:
            click.echo(f"error: {_one_line(str(error))}", err=True)
            ctx.exit(2 if isinstance(error, InvalidInputError) else 1)
        except OSError as error:
            # Disk full, permission denied and the like, on a path the library did not check.
            where = f" ({error.filename})" if error.filename else ""
            click.echo(f"error: {_one_line(str(error.strerror or error))}{where}", err=True)
            ctx.exit(1)


def _one_line(message: str) -> str:
    """Join a message's lines (a parser's excerpt, say) into one, with secrets masked."""
    return redact(" ".join(message.split()))


@click.group(cls=_Group)
@click.version_option(package_name="llmsurgeon-core")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Estimate a language model's pretraining data mixture from its samples."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter()


def _run(config: Path | None, overrides: tuple[str, ...], run_dir: Path | None):
    from .config import load_config
    from .pipeline import Run, check_run

    all_overrides = list(overrides)
    if run_dir is not None:
        all_overrides.append(f"run_dir={run_dir}")
    run = Run(load_config(config, all_overrides))
    check_run(run)
    return run


def _print_summary(result: dict[str, Any], run_dir: Path) -> None:
    truth = result["truth"]
    header = f"{'domain':<16}{'estimate':>10}{'interval':>16}{'naive':>9}"
    if truth:
        header += f"{'known':>9}"
    click.echo(header)
    for domain in result["domains"]:
        interval = (result["interval"] or {}).get(domain)
        shown = f"{100 * interval[0]:.1f}–{100 * interval[1]:.1f}" if interval else "-"
        line = (
            f"{domain:<16}{100 * result['estimate'][domain]:>9.1f}%{shown:>16}"
            f"{100 * result['naive'][domain]:>8.1f}%"
        )
        if truth:
            line += f"{100 * truth[domain]:>8.1f}%"
        click.echo(line)
    if result["metrics"]:
        click.echo(
            f"overlap accuracy: estimate {result['metrics']['overlap_accuracy']:.3f}, "
            f"naive {result['naive_metrics']['overlap_accuracy']:.3f}"
        )
    generation = result["diagnostics"].get("generation")
    if generation:
        click.echo(
            "overlap with the mixture the target actually generated (its domain tags): "
            f"{generation['overlap_accuracy']:.3f}"
        )
    if result["diagnostics"].get("too_few_samples"):
        click.echo(f"warning: {result['diagnostics']['too_few_samples']}", err=True)
    click.echo(f"report: {run_dir / 'report.md'}", err=True)


@cli.command()
@_CONFIG_ARGUMENT
@_SET_OPTION
@_RUN_DIR_OPTION
def audit(config: Path | None, overrides: tuple[str, ...], run_dir: Path | None) -> None:
    """Run every stage of an audit (no CONFIG: the demo).

    Calibrates or reuses the calibration, samples, classifies and solves.
    """
    run = _run(config, overrides, run_dir)
    with run.locked():
        result = run.audit()
    _print_summary(result, run.run_dir)


@cli.command()
@_CONFIG_ARGUMENT
@_SET_OPTION
@_RUN_DIR_OPTION
def calibrate(config: Path | None, overrides: tuple[str, ...], run_dir: Path | None) -> None:
    """Fit the classifier and its out-of-fold confusion matrix."""
    run = _run(config, overrides, run_dir)
    with run.locked():
        calibration = run.calibrate()
    click.echo(f"out-of-fold accuracy {calibration.accuracy:.3f}", err=True)
    click.echo(str(run.config.calibration or run.run_dir / "calibration"))


@cli.command()
@_CONFIG_ARGUMENT
@_SET_OPTION
@_RUN_DIR_OPTION
def sample(config: Path | None, overrides: tuple[str, ...], run_dir: Path | None) -> None:
    """Draw samples from the target into samples.jsonl.

    A rerun after an interruption resumes where the file ends.
    """
    run = _run(config, overrides, run_dir)
    with run.locked():
        records = run.sample()
    click.echo(f"{len(records)} samples in {run.run_dir / 'samples.jsonl'}", err=True)


@cli.command()
@_CONFIG_ARGUMENT
@_SET_OPTION
@_RUN_DIR_OPTION
def estimate(config: Path | None, overrides: tuple[str, ...], run_dir: Path | None) -> None:
    """Classify the samples and solve for the mixture."""
    run = _run(config, overrides, run_dir)
    run.check_samples_exist()
    with run.locked():
        result = run.estimate()
    _print_summary(result, run.run_dir)


@cli.command()
@click.argument("result_path", metavar="RESULT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--truth", required=True, help="A recipe of the result's taxonomy, or a JSON/YAML file."
)
@click.option(
    "--level",
    help="Level name or depth of the taxonomy tree to sum the mixtures to before comparing; "
    "default: the finest level the known mixture is given at.",
)
@click.option(
    "--merge",
    help="A merge map of the taxonomy, or NEW=MEMBER+MEMBER;... (e.g. web=commoncrawl+c4), "
    "applied after --level.",
)
@click.option(
    "--taxonomy",
    "taxonomy_name",
    help="Taxonomy name or YAML path, where the result's taxonomy came from a file.",
)
def evaluate(
    result_path: Path,
    truth: str,
    level: str | None,
    merge: str | None,
    taxonomy_name: str | None,
) -> None:
    """Compare a result.json with a known mixture."""
    from .evaluation import evaluate_result

    report = evaluate_result(result_path, truth, level, merge, taxonomy_name)
    click.echo(json.dumps(report, indent=2))


@cli.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of Markdown.")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write compare.md, compare.html and trajectory.png into this directory.",
)
def compare(runs: tuple[Path, ...], as_json: bool, output: Path | None) -> None:
    """Compare the estimates of several runs of one taxonomy, in the order given.

    RUN is a run directory or its result.json, for example one per training checkpoint.
    """
    from .compare import load_comparison, render_comparison_markdown, write_comparison

    comparison = load_comparison(runs)
    if as_json:
        click.echo(json.dumps(comparison.to_json(), indent=2))
    else:
        click.echo(render_comparison_markdown(comparison), nl=False)
    if output is not None:
        for path in write_comparison(comparison, output):
            click.echo(f"wrote {path}", err=True)


cli.add_command(install)
cli.add_command(uninstall)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins and the core's own components, with any load errors."""
    from .registry import default_registry

    registry = default_registry()
    listed = [*registry.builtins.values(), *registry.plugins.values()]
    infos = [p.to_json() for p in listed]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    if not registry.plugins:
        click.echo("no plugins installed")
    for info in infos:
        click.echo(f"{info['name']} ({info['distribution']} {info['version']})")
        if info["hooks"]:
            click.echo(f"  hooks: {', '.join(info['hooks'])}")
        for kind, names in sorted(info["components"].items()):
            click.echo(f"  {kind}: {', '.join(names)}")
        for error in info["errors"]:
            click.echo(f"  error: {error}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def taxonomies(as_json: bool) -> None:
    """List taxonomies, their levels and known mixtures."""
    from .registry import default_registry
    from .taxonomy import resolve_taxonomy

    registry = default_registry()
    rows = []
    for name in registry.names("taxonomy"):
        taxonomy = resolve_taxonomy(name, registry)
        rows.append(
            {
                "name": name,
                "plugin": registry.get("taxonomy", name).plugin,
                "domains": taxonomy.domain_ids,
                "levels": [taxonomy.level_name(d) for d in range(taxonomy.max_depth + 1)],
                "recipes": sorted(taxonomy.recipes),
                "merges": sorted(taxonomy.merges),
                "description": taxonomy.description,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<20}{len(row['domains']):>3} domains  {row['description']}")
        if row["recipes"]:
            click.echo(f"{'':<20}    known mixtures: {', '.join(row['recipes'])}")


@cli.group()
def taxonomy() -> None:
    """Inspect and check taxonomies."""


@taxonomy.command("show")
@click.argument("name")
def taxonomy_show(name: str) -> None:
    """Show a taxonomy's domain tree, known mixtures and merge maps (NAME or a file)."""
    from .taxonomy import resolve_taxonomy

    click.echo(render_taxonomy(resolve_taxonomy(name)))


@taxonomy.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--sources",
    "check_sources",
    is_flag=True,
    help="Also read one reference chunk of every leaf domain, to check its sources.",
)
def taxonomy_validate(path: Path, check_sources: bool) -> None:
    """Check a taxonomy file and list every invalid field."""
    from .corpus import build_reference_corpus
    from .taxonomy import TaxonomyValidationError, load_taxonomy_file

    try:
        loaded = load_taxonomy_file(path)
    except TaxonomyValidationError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    if check_sources:
        # Raises TaxonomyError, naming the domain, when a source yields no text.
        build_reference_corpus(loaded, max_per_domain=1, chunk_words=8, seed=0)
    depths = loaded.max_depth + 1
    levels = ", ".join(loaded.levels) if loaded.levels else f"{depths} unnamed"
    click.echo(
        f"{path}: valid taxonomy {loaded.name!r} with {len(loaded.all_ids)} domains "
        f"({len(loaded.domain_ids)} leaves, levels: {levels}) and "
        f"{len(loaded.recipes)} known mixtures"
    )


@taxonomy.command("schema")
def taxonomy_schema() -> None:
    """Print the JSON Schema of the taxonomy file format."""
    from .taxonomy import taxonomy_json_schema

    click.echo(json.dumps(taxonomy_json_schema(), indent=2))


def _recipe_cell(loaded: Any, recipe: str, domain_id: str) -> str:
    """Return a recipe's share of a domain in percent, or '-' where it is not defined."""
    from .errors import TaxonomyError

    try:
        level = None if domain_id in loaded.domain_ids else loaded.depth(domain_id)
        share = loaded.recipe_mixture(recipe, level).get(domain_id)
    except TaxonomyError:
        return "-"
    return "-" if share is None else f"{100 * share:.2f}"


def render_taxonomy(loaded: Any) -> str:
    """Render the domain tree, a table of known mixtures at every level, and merge maps."""
    lines = [f"{loaded.name}: {loaded.description}".rstrip(": ")]
    if loaded.max_depth > 0:
        names = [loaded.level_name(d) for d in range(loaded.max_depth + 1)]
        lines.append(f"levels: {' > '.join(names)}")
    lines.append("")
    children: dict[str | None, list[Any]] = {}
    for domain in loaded.domains:
        children.setdefault(domain.parent, []).append(domain)
    order: list[tuple[int, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for domain in children.get(parent, []):
            order.append((depth, domain))
            walk(domain.id, depth + 1)

    walk(None, 0)
    for depth, domain in order:
        kinds = sorted({s.kind for s in domain.sources})
        shown = f"  [{', '.join(kinds)}]" if kinds else ""
        lines.append(f"{'  ' * depth}- {domain.id}: {domain.description}{shown}".rstrip(": "))
    recipes = list(loaded.recipes)
    if recipes:
        width = max(len(f"{'  ' * d}{dom.id}") for d, dom in order) + 2
        lines += ["", "known mixtures (%; a parent's share is the sum of its children's):"]
        header = "".join(f"{f'[{i + 1}]':>9}" for i in range(len(recipes)))
        lines.append(f"  {'domain':<{width}}{header}")
        for depth, domain in order:
            cells = "".join(f"{_recipe_cell(loaded, r, domain.id):>9}" for r in recipes)
            lines.append(f"  {'  ' * depth + domain.id:<{width}}{cells}")
    for index, name in enumerate(recipes, start=1):
        recipe = loaded.recipes[name]
        status = "" if recipe.confirmed else " (unconfirmed)"
        lines += ["", f"[{index}] recipe {name}{status}: {recipe.description}".rstrip(": ")]
        if recipe.source:
            lines.append(f"  source: {recipe.source}")
        if recipe.notes:
            lines.append(f"  notes: {recipe.notes}")
        if recipe.sum_note:
            lines.append(f"  sum: {recipe.sum_note}")
    for name, merge in sorted(loaded.merges.items()):
        groups = "; ".join(f"{t} = {' + '.join(m)}" for t, m in merge.items())
        lines += ["", f"merge {name}: {groups}"]
    return "\n".join(lines)


@cli.group()
def config() -> None:
    """Inspect the config format."""


@config.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config, with every installed plugin's options."""
    from .registry import default_registry
    from .schema import config_json_schema

    click.echo(json.dumps(config_json_schema(default_registry()), indent=2))


@config.command("demo")
def config_demo() -> None:
    """Print the embedded demo config, a starting point for your own."""
    from .config import demo_config_text

    click.echo(demo_config_text(), nl=False)


def main() -> None:
    """Entry point of the console script: add plugin commands, then run."""
    from .registry import default_registry

    try:
        registry = default_registry()
        for impl in registry.plugin_manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as error:  # one broken plugin must not break the CLI
                registry.plugins[impl.plugin_name].errors.append(
                    f"register_commands raised {type(error).__name__}: {error}"
                )
    except LlmsurgeonError as error:
        click.echo(f"error: {_one_line(str(error))}", err=True)
        sys.exit(2 if isinstance(error, InvalidInputError) else 1)
    # Outside standalone mode click raises its errors, so a usage error prints
    # as one line like every other invalid input, not as click's usage block.
    try:
        status = cli.main(standalone_mode=False)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "llmsurgeon"
        message = _one_line(error.format_message()).rstrip(".")
        click.echo(f"error: {message}; run `{command} --help`", err=True)
        sys.exit(2)
    except click.ClickException as error:
        click.echo(f"error: {_one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


def _print_plan(plan: Any) -> None:
    header = f"{'domain':<16}{'assumed':>9}{'bound std':>11}{'needed n':>10}{'simulated':>11}"
    click.echo(header)
    for row in plan.domains:
        simulated = "-" if row.simulated_width is None else f"{100 * row.simulated_width:.2f}%"
        bound = "-" if row.bound_std is None else f"{100 * row.bound_std:.2f}%"
        needed = "-" if row.samples_needed is None else str(row.samples_needed)
        click.echo(
            f"{row.domain:<16}{100 * row.share:>8.1f}%{bound:>11}{needed:>10}{simulated:>11}"
        )
    click.echo(
        f"samples needed: {plan.n_samples} for intervals at most {100 * plan.width:g} "
        f"percentage points wide at level {plan.level:g}"
    )
    if plan.domains_over_width:
        click.echo(
            f"simulated intervals of {', '.join(plan.domains_over_width)} are wider than "
            "--width at that count: the calibration's noise does not shrink with more samples, "
            "so raise reference.max_per_domain",
            err=True,
        )


@cli.command()
@_CONFIG_ARGUMENT
@_SET_OPTION
@_RUN_DIR_OPTION
@click.option(
    "--width",
    type=float,
    required=True,
    help="Maximum interval width of every domain, as a share (0.02 is 2 percentage points).",
)
@click.option("--level", type=float, help="Interval coverage; default: bootstrap.level.")
@click.option(
    "--mixture",
    "mixture_text",
    metavar="RECIPE|DOMAIN=SHARE,...",
    help="Assumed target mixture: a recipe of the taxonomy, or shares (unlisted domains get 0, "
    "shares are scaled to sum to 1); default: truth, else uniform.",
)
@click.option(
    "--simulations",
    type=int,
    default=50,
    show_default=True,
    help="Simulated audits that check the planned count; 0 skips the check.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(
    config: Path | None,
    overrides: tuple[str, ...],
    run_dir: Path | None,
    width: float,
    level: float | None,
    mixture_text: str | None,
    simulations: int,
    as_json: bool,
) -> None:
    """Plan how many samples an audit needs.

    Uses the calibration alone, so it runs before any sampling.
    """
    from .planning import (
        assumed_mixture,
        check_level,
        check_simulations,
        check_width,
        plan_samples,
    )

    check_width(width)
    check_simulations(simulations)
    run = _run(config, overrides, run_dir)
    level = check_level(run.config.bootstrap.level if level is None else level)
    mixture = assumed_mixture(run.taxonomy, mixture_text, run.truth_vector())
    with run.locked():
        calibration = run.calibrate()
    result = plan_samples(
        run.make_solver(),
        calibration,
        width,
        level,
        mixture,
        n_simulations=simulations,
        seed=run.config.bootstrap.seed,
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_plan(result)


@cli.group()
def plugin() -> None:
    """Create plugin packages."""


@plugin.command("new")
@click.argument("name")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["sampler", "classifier", "solver", "taxonomy"]),
    help="Kind of component the plugin registers.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder that receives the package folder llmsurgeon-NAME.",
)
def plugin_new(name: str, kind: str, directory: Path) -> None:
    """Write the skeleton of a plugin package NAME that registers one component."""
    from .scaffold import write_plugin

    root = write_plugin(name, kind, directory)
    click.echo(f"wrote {root}; install it with: llmsurgeon install -e {root}", err=True)
    click.echo(str(root))
