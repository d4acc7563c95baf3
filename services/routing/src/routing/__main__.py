"""`python -m routing`: serve routing's consumers and health endpoint."""

from routing.bootstrap import create_app
from routing.settings import RoutingSettings
from rujuk_runtime.service import serve

if __name__ == "__main__":
    settings = RoutingSettings()
    serve(create_app(settings), settings)
