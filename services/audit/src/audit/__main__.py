"""`python -m audit`: run the ledger consumer and its health endpoint."""

from audit.bootstrap import create_app
from audit.settings import AuditSettings
from rujuk_runtime.service import serve

if __name__ == "__main__":
    settings = AuditSettings()
    serve(create_app(settings), settings)
