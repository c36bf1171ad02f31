"""Names of the flows and deployments, shared by `serve`, `prefect.yaml` and the flows that trigger each other."""

SUBMIT = "submit-robot-job"
ORCHESTRATE = "orchestrate-robot-job"
RETRY = "retry-failed-items"
RECONCILE = "reconcile"

# "<flow name>/<deployment name>": every deployment is named after its flow, served or deployed.
ORCHESTRATE_DEPLOYMENT = f"{ORCHESTRATE}/{ORCHESTRATE}"
RECONCILE_DEPLOYMENT = f"{RECONCILE}/{RECONCILE}"
RECONCILE_INTERVAL_S = 60
