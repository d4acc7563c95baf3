"""`python -m intake`: serve intake's HTTP API."""

from intake.bootstrap import create_app
from intake.settings import IntakeSettings
from rujuk_runtime.service import serve

if __name__ == "__main__":
    settings = IntakeSettings()
    serve(create_app(settings), settings)
