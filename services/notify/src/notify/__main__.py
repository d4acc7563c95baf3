"""`python -m notify`: run the notify service."""

from notify.bootstrap import create_app
from notify.settings import NotifySettings
from rujuk_runtime.service import serve

if __name__ == "__main__":
    settings = NotifySettings()
    serve(create_app(settings), settings)
