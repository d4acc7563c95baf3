"""`python -m console`: serve the console's pages."""

from console.bootstrap import create_app
from console.settings import ConsoleSettings
from rujuk_runtime.service import serve

if __name__ == "__main__":
    settings = ConsoleSettings()
    serve(create_app(settings), settings)
