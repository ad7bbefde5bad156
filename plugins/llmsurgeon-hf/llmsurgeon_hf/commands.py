"""The ``llmsurgeon train-target`` command."""

from __future__ import annotations

import math
from pathlib import Path

import click
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, resolve_taxonomy

from .train import TargetTraining, check_output_dir, target_mixture, train_target

__all__ = ["parse_mixture", "train_target_command"]

# CLI flag of each TargetTraining field the command sets, for error messages.
_FLAGS = {
    "taxonomy": "--taxonomy",
    "recipe": "--recipe",
    "mixture": "--mixture",
    "tokens": "--tokens",
    "seed": "--seed",
}


def parse_mixture(text: str) -> dict[str, float]:
    """Parse ``id=share,id=share`` into shares by domain id.

    Raises:
        ConfigError: naming the malformed item, the invalid share or the
            repeated domain.
    """
    mixture: dict[str, float] = {}
    for item in text.split(","):
        domain_id, equals, share_text = item.strip().partition("=")
        domain_id = domain_id.strip()
        if not equals or not domain_id:
            raise ConfigError(
                f"invalid --mixture item {item.strip()!r}; write id=share items separated by "
                "commas, for example code=0.3,web=0.7"
            )
        try:
            share = float(share_text)
        except ValueError:
            raise ConfigError(
                f"invalid share {share_text.strip()!r} of domain {domain_id!r} in --mixture; "
                "use a number such as 0.3"
            ) from None
        if not math.isfinite(share) or share < 0:
            raise ConfigError(
                f"share {share_text.strip()!r} of domain {domain_id!r} in --mixture is not a "
                "finite non-negative number; use a number such as 0.3"
            )
        if domain_id in mixture:
            raise ConfigError(f"domain {domain_id!r} appears twice in --mixture; list it once")
        mixture[domain_id] = share
    return mixture


def _training_options(**values: object) -> TargetTraining:
    """Validate the command's values, turning pydantic errors into one ConfigError."""
    try:
        return TargetTraining.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        field = str(first["loc"][0]) if first["loc"] else None
        if field is None:
            raise ConfigError(message) from None
        raise ConfigError(f"invalid {_FLAGS.get(field, field)}: {message}") from None


@click.command("train-target")
@click.option(
    "--taxonomy",
    required=True,
    help="Registered taxonomy name or path of a taxonomy YAML file.",
)
@click.option("--recipe", help="Recipe of the taxonomy whose shares set the mixture.")
@click.option(
    "--mixture",
    help="Shares by domain id, as id=share,id=share; renormalized to sum to 1.",
)
@click.option(
    "--out",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to save the target into; it must not exist or must be empty.",
)
@click.option(
    "--tokens",
    type=int,
    default=TargetTraining.model_fields["tokens"].default,
    show_default=True,
    help="Number of training tokens.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of data order and weights."
)
def train_target_command(
    taxonomy: str,
    recipe: str | None,
    mixture: str | None,
    output_dir: Path,
    tokens: int,
    seed: int,
) -> None:
    """Train a small GPT-2 target at a known mixture.

    The training text is the taxonomy's reference text, mixed by domain.

    Every training sequence starts with the domain's reserved token, so the
    first token of each generated text records the domain the model chose.
    Prints the output directory.
    """
    options = _training_options(
        taxonomy=taxonomy,
        recipe=recipe,
        mixture=parse_mixture(mixture) if mixture is not None else None,
        tokens=tokens,
        seed=seed,
    )
    # Validate everything before announcing a training that takes minutes.
    check_output_dir(output_dir)
    shares = target_mixture(options, resolve_taxonomy(options.taxonomy))
    mixture_text = ",".join(f"{domain_id}={share:.3g}" for domain_id, share in shares.items())
    click.echo(f"training a target at {mixture_text} into {output_dir}", err=True)
    path = train_target(options, output_dir)
    click.echo(f"saved the target to {path}", err=True)
    click.echo(str(path))
