#!/bin/sh
# One-shot job (temporalio/admin-tools): waits for the Temporal frontend, creates the
# namespace the workers use if it does not exist, and waits until the frontend serves it.
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS}"
: "${TEMPORAL_NAMESPACE:?set TEMPORAL_NAMESPACE}"
retention="${TEMPORAL_NAMESPACE_RETENTION:-30d}"
tries="${TEMPORAL_WAIT_TRIES:-60}"

# retry WHAT COMMAND...: runs COMMAND every 2 s until it succeeds, at most $tries times.
retry() {
    what="$1"
    shift
    n=1
    until "$@" >/dev/null 2>&1; do
        if [ "$n" -ge "$tries" ]; then
            echo "create-namespace: gave up waiting for $what after $n tries" >&2
            "$@" # once more, showing its error
            exit 1
        fi
        n=$((n + 1))
        sleep 2
    done
}

retry "the cluster at $TEMPORAL_ADDRESS" temporal operator cluster health --address "$TEMPORAL_ADDRESS"

if temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
    echo "create-namespace: $TEMPORAL_NAMESPACE exists"
else
    temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" \
        --retention "$retention" --address "$TEMPORAL_ADDRESS"
    echo "create-namespace: $TEMPORAL_NAMESPACE created (retention $retention)"
fi

# A new namespace reaches the frontend's cache within seconds; workers that poll before
# that are refused, so the job ends only once a list call in it succeeds.
retry "namespace $TEMPORAL_NAMESPACE" temporal workflow list --namespace "$TEMPORAL_NAMESPACE" \
    --address "$TEMPORAL_ADDRESS" --limit 1
echo "create-namespace: $TEMPORAL_NAMESPACE ready"
