#!/bin/sh
# Writes Alertmanager's configuration from the deployment's channels, then (with arguments)
# runs them: `render-config.sh OUT_FILE [alertmanager args...]`. Alertmanager does not read
# environment variables itself, so compose runs this as the container's entrypoint.
#
# Channels, the same the deployment gives notify (docs/operations.md#alerts):
#   ALERT_EMAIL_TO          where e-mail alerts go (with NOTIFY_SMTP_HOST, _PORT, _SENDER,
#                           _USERNAME, _PASSWORD, as notify's e-mail channel)
#   ALERT_WEBHOOK_URL       a webhook that receives Alertmanager's JSON (chat bridge, pager)
# With neither, alerts stay visible in Alertmanager's and Prometheus's pages only, and this
# script says so loudly on every start.
set -eu

out=${1:?usage: render-config.sh OUT_FILE [alertmanager args...]}
shift

# One line of the file, as written (dash's echo would read backslashes).
line() {
    printf '%s\n' "$*"
}

# A value as a double-quoted YAML string.
quoted() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

email_to=${ALERT_EMAIL_TO:-}
smtp_host=${NOTIFY_SMTP_HOST:-}
webhook=${ALERT_WEBHOOK_URL:-}

{
    line "# Rendered by deploy/alertmanager/render-config.sh; edit the environment, not this."
    line "route:"
    line "  receiver: ops"
    line "  group_by: [alertname, service, district, agency_id]"
    line "  group_wait: 30s"
    line "  group_interval: 5m"
    line "  repeat_interval: 4h"
    line "  routes:"
    line "    - receiver: ops"
    line "      matchers: ['severity=\"critical\"']"
    line "      group_wait: 10s"
    line "      repeat_interval: 30m"
    line "inhibit_rules:"
    line "  # PostgreSQL or NATS away explains a stuck outbox and a falling-behind consumer."
    line "  - source_matchers: ['alertname=\"RujukDependencyUnreachable\"']"
    line "    target_matchers: ['alertname=~\"RujukOutboxStuck|RujukConsumerFallingBehind\"']"
    line "    equal: [service]"
    line "receivers:"
    line "  - name: ops"
    if [ -n "$email_to" ] && [ -n "$smtp_host" ]; then
        line "    email_configs:"
        line "      - to: $(quoted "$email_to")"
        line "        from: $(quoted "${NOTIFY_SMTP_SENDER:-rujuk@localhost}")"
        line "        smarthost: $(quoted "$smtp_host:${NOTIFY_SMTP_PORT:-587}")"
        if [ -n "${NOTIFY_SMTP_USERNAME:-}" ]; then
            line "        auth_username: $(quoted "$NOTIFY_SMTP_USERNAME")"
            line "        auth_password: $(quoted "${NOTIFY_SMTP_PASSWORD:-}")"
        fi
        line "        send_resolved: true"
    fi
    if [ -n "$webhook" ]; then
        line "    webhook_configs:"
        line "      - url: $(quoted "$webhook")"
        line "        send_resolved: true"
    fi
} > "$out"

if [ -z "$webhook" ] && { [ -z "$email_to" ] || [ -z "$smtp_host" ]; }; then
    echo "PERINGATAN: tidak ada saluran peringatan; isi ALERT_EMAIL_TO (dengan NOTIFY_SMTP_HOST)" \
        "atau ALERT_WEBHOOK_URL / WARNING: no alert channel: set ALERT_EMAIL_TO (with" \
        "NOTIFY_SMTP_HOST) or ALERT_WEBHOOK_URL; alerts show in Alertmanager only" >&2
fi

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
