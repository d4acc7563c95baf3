"""`rujuk sop`: SOP kabupaten / district SOPs: check, explain, publish."""

import typer

app = typer.Typer(
    help="SOP kabupaten / district SOPs: check, explain, publish", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """SOP kabupaten / district SOPs: check, explain, publish."""
