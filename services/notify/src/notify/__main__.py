"""`python -m notify`: run the notify service."""

from notify.app import build
from notify.settings import NotifySettings
from rujuk_runtime.service import serve

if __name__ == "__main__":
    settings = NotifySettings()
    serve(build(settings).asgi_app(), settings)
