"""`rujuk token`: Token akses / access tokens for operators, partners, coordinators and auditors."""

import typer

app = typer.Typer(
    help="Token akses / access tokens for operators, partners, coordinators and auditors",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """Token akses / access tokens for operators, partners, coordinators and auditors."""
