#!/bin/sh
# Make every secret file the rujuk units read, where it is missing: safe to run again (it
# never changes a file that exists). Run as root after creating the rujuk user:
#   sudo sh /opt/rujuk/deploy/systemd/make-credentials.sh
# Each file is named as the variable it stands for, owned by rujuk, mode 0600, in a folder per
# unit (/etc/rujuk/credentials/<unit>/), and handed to that unit by LoadCredential=. To rotate
# one, delete it and run this again (docs/operations.md, "Rotating secrets").
set -eu
CREDENTIALS=${CREDENTIALS:-/etc/rujuk/credentials}
PYTHON=${PYTHON:-/opt/rujuk/.venv/bin/python}
OWNER=${OWNER:-rujuk}
POSTGRES=${POSTGRES:-127.0.0.1:5532}
umask 077

random() { "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

put() {  # put FILE VALUE: write FILE unless it exists
  if [ ! -e "$1" ]; then
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" > "$1"
    echo "dibuat / made: $1"
  fi
}

put "$CREDENTIALS/postgres/SUPERUSER_PASSWORD" "$(random)"
superuser=$(cat "$CREDENTIALS/postgres/SUPERUSER_PASSWORD")
put "$CREDENTIALS/provision/DATABASE_URL" "postgresql://postgres:$superuser@$POSTGRES/rujuk"
for service in intake routing notify audit console; do
  variable="$(echo "$service" | tr a-z A-Z)_DB_PASSWORD"
  put "$CREDENTIALS/provision/$variable" "$(random)"
  password=$(cat "$CREDENTIALS/provision/$variable")
  put "$CREDENTIALS/$service/DATABASE_URL" "postgresql://rujuk_$service:$password@$POSTGRES/rujuk"
done
put "$CREDENTIALS/intake/INTAKE_MASTER_KEYS" \
  "$("$PYTHON" -c 'from intake.vault import new_master_key_spec; print(new_master_key_spec("k1"))')"
put "$CREDENTIALS/notify/NOTIFY_WEBHOOK_SIGNING_KEY" "$(random)"
put "$CREDENTIALS/console/CONSOLE_SESSION_SECRET" "$(random)"

chown -R "$OWNER:$OWNER" "$CREDENTIALS"
chmod -R u=rwX,go= "$CREDENTIALS"
