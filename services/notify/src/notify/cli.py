"""`rujuk partner`: Mitra / partner agencies: credentials and secrets."""

import typer

app = typer.Typer(help="Mitra / partner agencies: credentials and secrets", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Mitra / partner agencies: credentials and secrets."""
