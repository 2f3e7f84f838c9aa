#!/usr/bin/env bash
# One-command, idempotent deployment of the postdeploy Cloud Function (2nd gen).
# Run it again at any time: every step checks before it creates, IAM bindings are set-like, and
# `gcloud functions deploy` updates the function in place. See deploy/README.md and --help.
set -Eeuo pipefail
# Any failing command ends the run with status 1; its "+ ..." line was printed just before it ran.
trap 'printf "deploy.sh: error: the last command failed (exit %s); nothing after it ran\n" "$?" >&2; exit 1' ERR

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT

readonly TOPIC=cloud-builds
readonly SA_NAME=postdeploy-fn
readonly DEFAULT_SECRET=postdeploy-slack-webhook
readonly RUNTIME=python312
readonly ENTRY_POINT=on_build
readonly TIMEOUT=540s
readonly MEMORY=256Mi
readonly MASK='****'
readonly DEFAULT_MAX_INSTANCES=10
readonly DEFAULT_MAX_DELIVERY_ATTEMPTS=10
# Pub/Sub backs off between these after a failed delivery (its own limits are 0-600 s).
readonly MIN_RETRY_DELAY=10s
readonly MAX_RETRY_DELAY=600s
# How long dead-lettered messages are kept for a look (Pub/Sub's maximum without topic retention).
readonly DEAD_LETTER_RETENTION=7d
# Cloud Tasks (on_pass: promote, follow_up): the queue's name unless --tasks-queue says otherwise, and its retries.
# A task whose call keeps failing is tried 8 times, 30 s to 300 s apart (about 22 minutes), then dropped: long enough
# to outlast a crashed delivery's claim (taken over after the function's 540 s timeout), never retried for days.
readonly DEFAULT_TASKS_QUEUE=postdeploy
readonly TASKS_RETRY=(--max-attempts=8 --min-backoff=30s --max-backoff=300s)
readonly TASKS_ENTRY_POINT=scheduled
# The function's APIs, plus iam and cloudresourcemanager, which this script needs to create the
# service account, the custom roles and edit the project's IAM policy.
readonly APIS=(
  cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  eventarc.googleapis.com pubsub.googleapis.com logging.googleapis.com
  monitoring.googleapis.com secretmanager.googleapis.com storage.googleapis.com
  artifactregistry.googleapis.com iam.googleapis.com cloudresourcemanager.googleapis.com
)
# What the function needs at run time; tests/, deploy/ and dev files stay out of the upload.
readonly SOURCE_FILES=(main.py requirements.txt)
readonly SOURCE_PACKAGES=(entry trigger core checks probe sources report)

# Custom roles, created in the project. Each holds exactly what one place in the code calls; see the
# permission table in deploy/README.md.
readonly ROLE_FUNCTION=postdeployFunction # bound on the project: reads only
readonly ROLE_PROBE_JOB=postdeployProbeJob # bound on each postdeploy-probe-SERVICE job only
readonly ROLE_REPORTS=postdeployReports    # bound on the report bucket only
readonly ROLE_ROLLBACK=postdeployRollback  # bound on each named service with on_fail: rollback or on_pass: promote only
# sources/cloud_run.py: services.get, revisions.list; probe/runners.py: revisions.get. (Nothing lists
# services any more; add run.services.list back if the resolver ever names other services again.)
readonly PERMS_RUN_READ=(run.services.get run.revisions.get run.revisions.list)
readonly PERMS_LOGS=(logging.logEntries.list)      # checks/logs.py and the probe's result line
readonly PERMS_METRICS=(monitoring.timeSeries.list) # checks/metrics.py
readonly PERMS_PROBE_PROJECT=(run.operations.get)  # waiting on the job update's long-running operation
# probe/runners.py on its own job: get, update, run with an args override, watch and cancel its execution.
readonly PERMS_PROBE_JOB=(run.jobs.get run.jobs.update run.jobs.run run.jobs.runWithOverrides
  run.executions.get run.executions.cancel)
# report/store.py: create-only claims, overwrites (which need delete), reads, releasing a claim.
readonly PERMS_REPORTS=(storage.objects.create storage.objects.get storage.objects.delete)
# report/rollback.py and report/rollout.py: the traffic update that moves it back on FAIL, or forward a step on PASS.
readonly PERMS_ROLLBACK=(run.services.update)
# Project-wide roles that earlier versions of this script granted; a run removes them when found.
readonly LEGACY_PROJECT_ROLES=(roles/run.developer roles/iam.serviceAccountUser roles/run.invoker
  roles/logging.viewer roles/monitoring.viewer)
readonly LEGACY_BUCKET_ROLE=roles/storage.objectAdmin

PROJECT=""
REGION=""
BUCKET=""
FUNCTION=postdeploy
CONFIG="$REPO_ROOT/deploy/postdeploy.example.yaml"
SLACK_SECRET=""
WEBHOOK=""
WEBHOOK_GIVEN=0 # 1: --slack-webhook was on the command line (a URL or "-")
NO_SLACK=0
SERVICES=()         # --service, as REGION/NAME
RUNTIME_SAS=()      # --runtime-sa: accounts the probe job may run as, given by hand
ARTIFACT_BUCKETS=() # --artifacts-bucket
RERUN_INVOKERS=()   # --rerun-invoker: who may call the NAME-rerun HTTP function (none: it is not deployed)
INVOKER_ALL=0       # --invoker-all-services
MAX_INSTANCES=$DEFAULT_MAX_INSTANCES
MAX_DELIVERY_ATTEMPTS=$DEFAULT_MAX_DELIVERY_ATTEMPTS
TASKS_QUEUE=$DEFAULT_TASKS_QUEUE
DRY_RUN=0
SEEN=" "

# What the config asks for (read_features): which permissions the function role holds, and per
# service name whether the imports probe runs (PROBE) and copies the revision's identity (COPY).
NEED_LOGS=1
NEED_METRICS=1
declare -A PROBE=() COPY=() JOB=() ROLLBACK=() PROMOTE=()
SCHEDULES=0       # 1: some config section promotes in steps or follows up, so Cloud Tasks is set up
VERDICT_TOPICS=() # the configured verdict_topic values: the function may publish there, and nowhere else
SIGNS=0           # 1: some config section sets signed_url_ttl, so the function signs report links as itself
ROUTE_SECRETS=()  # projects/P/secrets/S of each notify route's webhook_secret, once each: read there, and nowhere else
ON_ACCOUNTS=" "   # "ROLE@EMAIL" bindings on single service accounts already made in this run
READ_SECRETS=" "  # secrets the function was already let read in this run

usage() {
  cat <<EOF
Usage: deploy/deploy.sh --project PROJECT_ID --region REGION --bucket BUCKET [options]

Deploys postdeploy as a 2nd-gen Cloud Function triggered by Cloud Build's "$TOPIC" topic,
with everything it needs: APIs, the topic, the report bucket, a service account holding custom
roles with only the permissions the enabled checks use, the Slack webhook in Secret Manager, and a
dead-letter topic for deliveries that keep failing. Safe to run again: it only creates what is
missing, and it removes the broad project-wide roles that earlier versions granted.

Required:
  --project PROJECT_ID     Google Cloud project to deploy into (the builds' project)
  --region REGION          region of the function and of a newly created bucket, e.g. us-central1
  --bucket BUCKET          Cloud Storage bucket for reports (created if missing); reports go
                           under gs://BUCKET/reports/

Services (what the function may touch beyond reading Cloud Run, logs and metrics):
  --service NAME           a Cloud Run service postdeploy validates, in --region; REGION/NAME for
                           another region. Repeat it for each. The function gets roles/run.invoker
                           on it (ID tokens for a private service), and when the config runs its
                           imports probe with copy_env, the job postdeploy-probe-NAME (rights on
                           that job only) and the right to act as the service's own runtime
                           account. Services not named here are still validated, as far as
                           reading allows.
  --runtime-sa EMAIL       also let the probe job run as this account (repeat per account). Needed
                           only for the Compute Engine default account, which is never taken on
                           automatically. Used only when a named service runs the probe with copy_env.
  --invoker-all-services   grant roles/run.servicesInvoker on the whole project instead of
                           roles/run.invoker per --service: the function may call every service
                           in the project (it still cannot run jobs)
  --artifacts-bucket BUCKET  grant roles/storage.objectViewer on BUCKET, where builds upload the
                           JUnit results checks.tests reads (repeat per bucket)
  --rerun-invoker MEMBER   also deploy NAME-rerun, the HTTP function that validates a stored report's
                           revision again (authentication required), and let MEMBER call it:
                           user:EMAIL, serviceAccount:EMAIL or group:EMAIL (repeat per member)

Scheduling (only when some config section has on_pass: promote or follow_up; otherwise none of it):
  --tasks-queue NAME       Cloud Tasks queue, in --region, that holds promotion steps and follow-ups
                           (default: $DEFAULT_TASKS_QUEUE). Created when missing; its retries are set to
                           ${TASKS_RETRY[*]}.
                           Also deploys NAME-tasks, the HTTP function (entry point $TASKS_ENTRY_POINT,
                           authentication required) the tasks call with an OIDC token of the
                           function's own account, before NAME, which needs its URL. That account
                           may add tasks to this queue only, act as itself (to put its identity
                           on them) and invoke NAME-tasks. A --service with on_pass: promote gets
                           the same traffic-update role on it as one with on_fail: rollback.

Slack (one of these; without any, the webhook is read from stdin or a hidden prompt, and an empty
answer keeps the webhook already stored in secret $DEFAULT_SECRET):
  --slack-webhook URL      store URL in Secret Manager secret $DEFAULT_SECRET (a new version
                           only when it changed). "-" reads it from stdin, which keeps it out of
                           your shell history and the process list.
  --slack-secret NAME      use an existing secret instead: NAME, projects/P/secrets/NAME or
                           projects/P/secrets/NAME/versions/V (nothing is written to it)
  --no-slack               no Slack message: no secret, no access to one

Options:
  --function NAME          function name (default: postdeploy)
  --config FILE            postdeploy config, shipped beside main.py as postdeploy.yaml
                           (default: deploy/postdeploy.example.yaml)
  --max-instances N        most function instances at once, 1-1000 (default: $DEFAULT_MAX_INSTANCES)
  --max-delivery-attempts N  deliveries of one message before it goes to the dead-letter topic
                           NAME-dead-letter instead, 5-100 (default: $DEFAULT_MAX_DELIVERY_ATTEMPTS)
  --dry-run                print every command, one per line prefixed with "+ ", and run none;
                           needs neither gcloud credentials nor network; the webhook is masked
  -h, --help               show this help

Exit status: 0 done, 1 a command failed, 2 usage or config error.
EOF
}

die() {
  printf 'deploy.sh: error: %s\n' "$*" >&2
  exit 2
}

fail() {
  printf 'deploy.sh: error: %s\n' "$*" >&2
  exit 1
}

note() {
  printf '# %s\n' "$*" >&2
}

warn() {
  printf '# WARNING: %s\n' "$*" >&2
}

metavar() {
  case $1 in
    --project) echo PROJECT_ID ;;
    --region) echo REGION ;;
    --bucket | --artifacts-bucket) echo BUCKET ;;
    --function) echo NAME ;;
    --config) echo FILE ;;
    --slack-webhook) echo URL ;;
    --slack-secret) echo NAME ;;
    --runtime-sa) echo EMAIL ;;
    --rerun-invoker) echo MEMBER ;;
    --tasks-queue) echo NAME ;;
    --service) echo 'NAME or REGION/NAME' ;;
    --max-instances | --max-delivery-attempts) echo N ;;
  esac
}

parse_args() {
  local arg flag value inline
  while (($# > 0)); do
    arg=$1
    shift
    inline=0
    flag=$arg
    value=""
    if [[ $arg == --*=* ]]; then
      flag=${arg%%=*}
      value=${arg#*=}
      inline=1
    fi
    case $flag in
      -h | --help)
        usage
        exit 0
        ;;
      --dry-run | --no-slack | --invoker-all-services)
        ((inline == 0)) || die "$flag takes no value, got '$value'"
        case $flag in
          --dry-run) DRY_RUN=1 ;;
          --no-slack) NO_SLACK=1 ;;
          --invoker-all-services) INVOKER_ALL=1 ;;
        esac
        ;;
      --project | --region | --bucket | --function | --config | --slack-webhook | --slack-secret | \
        --runtime-sa | --service | --artifacts-bucket | --max-instances | --max-delivery-attempts | --rerun-invoker | \
        --tasks-queue)
        case $flag in
          --runtime-sa | --service | --artifacts-bucket | --rerun-invoker) ;; # repeatable
          *) [[ $SEEN != *" $flag "* ]] || die "$flag given twice; expected it once" ;;
        esac
        SEEN+="$flag "
        if ((inline == 0)); then
          if (($# == 0)); then
            die "expected $flag $(metavar "$flag"), got nothing"
          fi
          if [[ $1 == -?* ]]; then
            die "expected $flag $(metavar "$flag"), got the option '$1'"
          fi
          value=$1
          shift
        fi
        # Never echo a webhook back, not even an invalid one.
        [[ -n $value ]] || die "expected $flag $(metavar "$flag"), got an empty value"
        case $flag in
          --project) PROJECT=$value ;;
          --region) REGION=$value ;;
          --bucket) BUCKET=$value ;;
          --function) FUNCTION=$value ;;
          --config) CONFIG=$value ;;
          --slack-webhook)
            WEBHOOK=$value
            WEBHOOK_GIVEN=1
            ;;
          --slack-secret) SLACK_SECRET=$value ;;
          --runtime-sa) RUNTIME_SAS+=("$value") ;;
          --service) SERVICES+=("$value") ;;
          --artifacts-bucket) ARTIFACT_BUCKETS+=("$value") ;;
          --rerun-invoker) RERUN_INVOKERS+=("$value") ;;
          --max-instances) MAX_INSTANCES=$value ;;
          --max-delivery-attempts) MAX_DELIVERY_ATTEMPTS=$value ;;
          --tasks-queue) TASKS_QUEUE=$value ;;
        esac
        ;;
      *)
        if [[ $arg == -* ]]; then
          die "unknown option '$flag' (see --help)"
        fi
        die "unexpected argument '$arg'; every value follows its option (see --help)"
        ;;
    esac
  done
}

readonly REGION_RE='^[a-z]+-[a-z]+[0-9]+$'
readonly BUCKET_RE='^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$'
readonly SERVICE_RE='^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'

# bucket_name FLAG VALUE: sets BUCKET_NAME to the bucket without gs:// or a trailing slash, or is a
# usage error.
bucket_name() {
  BUCKET_NAME=${2#gs://}
  BUCKET_NAME=${BUCKET_NAME%/}
  [[ $BUCKET_NAME =~ $BUCKET_RE && $BUCKET_NAME != goog* ]] ||
    die "expected $1 to be a bucket name (3-222 lowercase letters, digits, - _ .; no path), got '$2'"
}

# whole_number FLAG VALUE MIN MAX: a usage error unless VALUE is an integer in [MIN, MAX].
whole_number() {
  local number_re='^[1-9][0-9]{0,3}$'
  [[ $2 =~ $number_re ]] && (($2 >= $3 && $2 <= $4)) ||
    die "expected $1 to be a whole number from $3 to $4, got '$2'"
}

validate_args() {
  [[ -n $PROJECT ]] || die "expected --project PROJECT_ID, got nothing"
  [[ -n $REGION ]] || die "expected --region REGION, got nothing"
  [[ -n $BUCKET ]] || die "expected --bucket BUCKET, got nothing"

  local project_re='^[a-z][a-z0-9-]{4,28}[a-z0-9]$'
  [[ $PROJECT =~ $project_re ]] ||
    die "expected --project to be a project ID (6-30 lowercase letters, digits, hyphens; not the project number or display name), got '$PROJECT'"
  [[ $REGION =~ $REGION_RE ]] || die "expected --region to be a region such as us-central1, got '$REGION'"

  bucket_name --bucket "$BUCKET"
  BUCKET=$BUCKET_NAME

  local member member_re='^(user|serviceAccount|group):[^@[:space:]]+@[^@[:space:]]+$'
  for member in ${RERUN_INVOKERS[@]+"${RERUN_INVOKERS[@]}"}; do
    [[ $member =~ $member_re ]] ||
      die "expected --rerun-invoker to be user:EMAIL, serviceAccount:EMAIL or group:EMAIL, got '$member'"
  done

  local function_re='^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'
  [[ $FUNCTION =~ $function_re ]] ||
    die "expected --function to be 1-63 lowercase letters, digits or hyphens starting with a letter, got '$FUNCTION'"

  [[ $CONFIG != gs://* ]] ||
    die "expected --config to be a local file, got '$CONFIG' (to read the config from Cloud Storage, set POSTDEPLOY_CONFIG on the function yourself)"
  [[ -f $CONFIG && -r $CONFIG ]] || die "expected --config FILE to be a readable file, got '$CONFIG' (not found)"
  CONFIG="$(cd -- "$(dirname -- "$CONFIG")" && pwd)/$(basename -- "$CONFIG")"

  local sa sa_re='^[a-z0-9-]+@[a-z0-9.-]+\.iam\.gserviceaccount\.com$|^[0-9]+-compute@developer\.gserviceaccount\.com$'
  for sa in ${RUNTIME_SAS[@]+"${RUNTIME_SAS[@]}"}; do
    [[ $sa =~ $sa_re ]] ||
      die "expected --runtime-sa to be a service account email (NAME@PROJECT.iam.gserviceaccount.com or PROJECT_NUMBER-compute@developer.gserviceaccount.com), got '$sa'"
  done

  local given region name normalized=() seen=" "
  for given in ${SERVICES[@]+"${SERVICES[@]}"}; do
    region=$REGION
    name=$given
    if [[ $given == */* ]]; then
      region=${given%%/*}
      name=${given#*/}
      [[ $region =~ $REGION_RE ]] ||
        die "expected --service REGION/NAME to start with a region such as us-central1, got '$given'"
    fi
    [[ $name =~ $SERVICE_RE ]] ||
      die "expected --service to be a Cloud Run service name (lowercase letters, digits, hyphens; starting with a letter) or REGION/NAME, got '$given'"
    [[ $seen != *" $region/$name "* ]] || die "--service $region/$name given twice; expected each service once"
    seen+="$region/$name "
    normalized+=("$region/$name")
  done
  SERVICES=(${normalized[@]+"${normalized[@]}"})

  local i
  for i in "${!ARTIFACT_BUCKETS[@]}"; do
    bucket_name --artifacts-bucket "${ARTIFACT_BUCKETS[i]}"
    ARTIFACT_BUCKETS[i]=$BUCKET_NAME
  done

  whole_number --max-instances "$MAX_INSTANCES" 1 1000
  whole_number --max-delivery-attempts "$MAX_DELIVERY_ATTEMPTS" 5 100

  local queue_re='^[A-Za-z0-9-]{1,100}$'
  [[ $TASKS_QUEUE =~ $queue_re ]] ||
    die "expected --tasks-queue to be a queue name (1-100 letters, digits or hyphens), got '$TASKS_QUEUE'"

  if [[ -n $SLACK_SECRET && $WEBHOOK_GIVEN == 1 ]]; then
    die "expected one of --slack-webhook and --slack-secret, got both"
  fi
  if ((NO_SLACK)) && [[ -n $SLACK_SECRET || $WEBHOOK_GIVEN == 1 ]]; then
    die "expected --no-slack on its own, got it with --slack-webhook or --slack-secret"
  fi
}

# --- printing and running commands ---------------------------------------------------------------

# Values only known while running (the staging folder, the project number, what a describe returns)
# are kept as @NAME@ in dry-run and printed as "$NAME", so the printed plan still reads as shell.
CAPTURED=()

quote_arg() {
  local a=$1 safe='^[A-Za-z0-9_@%+=:,./-]+$'
  if [[ -n $WEBHOOK ]]; then
    a=${a//"$WEBHOOK"/"$MASK"}
  fi
  if [[ $a =~ $safe ]]; then
    printf '%s' "$a"
  else
    printf "'%s'" "${a//\'/\'\\\'\'}"
  fi
}

render() {
  local out="" a name
  for a in "$@"; do
    out+="${out:+ }$(quote_arg "$a")"
  done
  for name in ${CAPTURED[@]+"${CAPTURED[@]}"}; do
    out=${out//"@$name@"/\"\$$name\"}
  done
  printf '%s' "$out"
}

# Dry-run: print to stdout. Real run: log to stderr, then run.
run() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(render "$@")"
    return 0
  fi
  printf '+ %s\n' "$(render "$@")" >&2
  "$@"
}

# A read-only existence check. Dry-run assumes "missing", so the plan shows the create command too.
probe() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(render "$@")"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# A read-only existence check of something this script does not create. Dry-run assumes "there",
# so the plan shows what is done with it.
found() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(render "$@")"
    return 0
  fi
  "$@" >/dev/null 2>&1
}

# capture VAR command...: VAR=$(command). Dry-run sets VAR to a placeholder.
# shellcheck disable=SC2016 # the printed "$(...)" is meant literally
capture() {
  local var=$1 value
  shift
  CAPTURED+=("$var")
  if ((DRY_RUN)); then
    printf '+ %s=$(%s)\n' "$var" "$(render "$@")"
    printf -v "$var" '@%s@' "$var"
    return 0
  fi
  printf '+ %s=$(%s)\n' "$var" "$(render "$@")" >&2
  value=$("$@")
  printf -v "$var" '%s' "$value"
}

# Feeds the webhook to a command's stdin. printf is a builtin, so the URL never appears in any
# process's argument list, and it is masked in what is printed.
run_with_webhook() {
  local line
  line="printf %s '$MASK' | $(render "$@")"
  if ((DRY_RUN)); then
    printf '+ %s\n' "$line"
    return 0
  fi
  printf '+ %s\n' "$line" >&2
  printf '%s' "$WEBHOOK" | "$@"
}

# IAM is eventually consistent: a service account or custom role created seconds ago can still be
# "not found" by set-iam-policy calls, so bindings are retried with backoff.
run_retry() {
  local attempt=1 delay=3
  if ((DRY_RUN)); then
    run "$@"
    return 0
  fi
  until run "$@"; do
    ((attempt < 5)) || return 1
    note "retrying in ${delay}s (IAM changes take a moment to propagate)"
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2))
  done
}

joined() {
  local IFS=,
  printf '%s' "$*"
}

# --- inputs ----------------------------------------------------------------------------------------

trim() {
  local s=$1
  s=${s//$'\r'/}
  s=${s#"${s%%[![:space:]]*}"}
  s=${s%"${s##*[![:space:]]}"}
  printf '%s' "$s"
}

read_webhook() {
  if [[ -n $SLACK_SECRET ]] || ((NO_SLACK)); then
    return 0
  fi
  if [[ $WEBHOOK_GIVEN == 1 && $WEBHOOK != - ]]; then
    note "the webhook was passed on the command line: it is now in your shell history; '--slack-webhook -' reads it from stdin instead"
  elif [[ $WEBHOOK_GIVEN == 1 ]]; then
    WEBHOOK=""
    if [[ -t 0 ]]; then
      IFS= read -r -s -p "Slack webhook URL (input hidden): " WEBHOOK || true
      printf '\n' >&2
    else
      IFS= read -r WEBHOOK || true
    fi
    [[ -n $(trim "$WEBHOOK") ]] || die "expected a Slack webhook URL on stdin (--slack-webhook -), got nothing"
  elif ((DRY_RUN)); then
    note "no --slack-webhook/--slack-secret/--no-slack: a real run reads the webhook from stdin or a hidden prompt"
    return 0
  elif [[ -t 0 ]]; then
    IFS= read -r -s -p "Slack webhook URL (input hidden; empty keeps the stored one): " WEBHOOK || true
    printf '\n' >&2
  else
    IFS= read -r WEBHOOK || true
  fi
  WEBHOOK=$(trim "$WEBHOOK")
  if [[ -n $WEBHOOK ]]; then
    local url_re='^https://[^[:space:]/]+/[^[:space:]]*$'
    [[ $WEBHOOK =~ $url_re ]] || die "expected the Slack webhook to be an https:// URL (value not shown)"
    [[ $WEBHOOK == https://hooks.slack.com/* ]] ||
      warn "the webhook is not on hooks.slack.com; storing it anyway"
  fi
}

check_sources() {
  local missing=() f
  for f in "${SOURCE_FILES[@]}"; do
    [[ -f $REPO_ROOT/$f ]] || missing+=("$f")
  done
  for f in "${SOURCE_PACKAGES[@]}"; do
    [[ -f $REPO_ROOT/$f/__init__.py ]] || missing+=("$f/")
  done
  if ((${#missing[@]} > 0)); then
    if ((DRY_RUN)); then
      warn "not in $REPO_ROOT yet: ${missing[*]} (a real run stops here)"
    else
      fail "expected the function's sources in $REPO_ROOT, missing: ${missing[*]}"
    fi
  fi
}

check_gcloud() {
  ((DRY_RUN == 0)) || return 0
  command -v gcloud >/dev/null 2>&1 ||
    fail "expected the gcloud CLI on PATH, got nothing (install the Google Cloud CLI)"
  local account
  account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null | head -n 1) || true
  [[ -n $account ]] || fail "expected an active gcloud account, got none (run: gcloud auth login)"
  note "deploying as $account"
  # Never stop at an interactive question half-way through.
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
}

# A Python with the function's dependencies (the repo's .venv when present), or nothing.
find_python() {
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then
    printf '%s' "$REPO_ROOT/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then
    printf '%s' python3
  else
    return 1
  fi
}

# --- steps -----------------------------------------------------------------------------------------

stage_sources() {
  note "staging the function's sources (the source tree is not modified)"
  capture STAGING mktemp -d -t postdeploy-staging.XXXXXX
  if ((DRY_RUN == 0)); then
    # shellcheck disable=SC2064 # expand now: STAGING is fixed from here on
    trap "rm -rf -- '$STAGING'" EXIT
  fi
  local files=() packages=() f
  for f in "${SOURCE_FILES[@]}"; do files+=("$REPO_ROOT/$f"); done
  for f in "${SOURCE_PACKAGES[@]}"; do packages+=("$REPO_ROOT/$f"); done
  run cp -- "${files[@]}" "$STAGING/"
  run cp -R -- "${packages[@]}" "$STAGING/"
  run find "$STAGING" -name __pycache__ -type d -prune -exec rm -rf -- '{}' +
  run cp -- "$CONFIG" "$STAGING/postdeploy.yaml"
}

# Catch a bad config here rather than in every function invocation. Best effort: it needs a Python
# with the runtime dependencies (the repo's .venv when present).
check_config() {
  local python rc=0
  if ! python=$(find_python); then
    warn "no python3 found: skipping the offline config check"
    return 0
  fi
  note "checking the config offline"
  run "$python" "$STAGING/main.py" check-config "$STAGING/postdeploy.yaml" || rc=$?
  case $rc in
    0) ;;
    4) die "the config $CONFIG is invalid (errors above); nothing was deployed" ;;
    *) warn "could not run the offline config check (exit $rc); continuing" ;;
  esac
}

# Reads, from the config that ships, what the permissions depend on: whether any service's logs or
# metrics check is on, whether any section schedules work through Cloud Tasks (on_pass: promote or
# follow_up), the verdict topics, whether any section signs report links (signed_url_ttl), the secrets the
# notify routes read their webhooks from, and for each --service whether the imports probe runs (modules or commands configured)
# and copies the revision's identity (copy_env), the name of its job, and whether it rolls back or is
# promoted. Local and read-only, so a dry run does it too. Without a usable Python no probe job and no
# Cloud Tasks queue is prepared.
read_features() {
  local python names=() entry out rc=0 kind name probe copy job rollback promote
  for entry in ${SERVICES[@]+"${SERVICES[@]}"}; do
    names+=("${entry#*/}")
  done
  if ! python=$(find_python); then
    warn "no python3 found to read the config: no imports probe job, no Cloud Tasks queue, no signing of report links and no access to notify webhooks are prepared; install requirements.txt and run again"
    return 0
  fi
  out=$("$python" - "$REPO_ROOT" "$CONFIG" ${names[@]+"${names[@]}"} <<'PY'
import sys

root, path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, root)
try:
    from core.config import load
    from core.errors import ConfigError
    from probe.runners import job_id_for
except ImportError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
try:
    config = load(path)
except ConfigError as exc:
    print(exc, file=sys.stderr)
    sys.exit(4)
every = [config.defaults, *(config.for_service(section) for section in config.file.services)]
print("logs", int(any(s.check("logs").enabled for s in every)))
print("metrics", int(any(s.check("metrics").enabled for s in every)))
print("schedules", int(any(s.schedules for s in every)))
for topic in sorted({s.verdict_topic for s in every if s.verdict_topic}):
    print("topic", topic)
print("signs", int(any(s.signed_url_ttl for s in every)))
for secret in sorted({route.webhook_secret.rsplit("/versions/", 1)[0] for route in config.file.notify}):
    print("secret", secret)
for name in names:
    imports = config.for_service(name).check("imports")
    runs = imports.enabled and bool(imports.modules or imports.commands)
    settings = config.for_service(name)
    print("service", name, int(runs), int(runs and imports.copy_env), job_id_for(name), int(settings.on_fail == "rollback"),
          int(settings.on_pass == "promote"))
PY
  ) || rc=$?
  case $rc in
    0) ;;
    4) die "the config $CONFIG is invalid (errors above); nothing was deployed" ;;
    *)
      warn "could not read the config with $python (exit $rc): no imports probe job, no Cloud Tasks queue, no signing of report links and no access to notify webhooks are prepared; install requirements.txt and run again"
      return 0
      ;;
  esac
  while read -r kind name probe copy job rollback promote; do
    case $kind in
      logs) NEED_LOGS=$name ;;
      metrics) NEED_METRICS=$name ;;
      schedules) SCHEDULES=$name ;;
      topic) VERDICT_TOPICS+=("$name") ;;
      signs) SIGNS=$name ;;
      secret) ROUTE_SECRETS+=("$name") ;;
      service)
        PROBE[$name]=$probe
        COPY[$name]=$copy
        JOB[$name]=$job
        ROLLBACK[$name]=$rollback
        PROMOTE[$name]=$promote
        ;;
    esac
  done <<<"$out"
  if ((SCHEDULES == 0)) && [[ $SEEN == *" --tasks-queue "* ]]; then
    warn "--tasks-queue $TASKS_QUEUE not used: no config section has on_pass: promote or follow_up, so nothing is scheduled"
  fi
}

# Whether any named service gets a probe job: the config runs its imports probe with copy_env (without
# it no job is prepared, see grant_services).
any_probe_job() {
  local entry name
  for entry in ${SERVICES[@]+"${SERVICES[@]}"}; do
    name=${entry#*/}
    if [[ ${PROBE[$name]:-0} == 1 && ${COPY[$name]:-0} == 1 ]]; then
      return 0
    fi
  done
  return 1
}

enable_apis() {
  local apis=("${APIS[@]}")
  ((SCHEDULES == 0)) || apis+=(cloudtasks.googleapis.com)
  # signed_url_ttl: the function signs with its Google-managed key through IAM Credentials signBlob.
  ((SIGNS == 0)) || apis+=(iamcredentials.googleapis.com)
  note "enabling APIs (no-op for those already on)"
  run gcloud services enable "${apis[@]}" --project="$PROJECT"
}

# on_pass: promote and follow_up schedule later calls as Cloud Tasks on one queue, in the function's region.
ensure_queue() {
  ((SCHEDULES)) || return 0
  note "Cloud Tasks queue $TASKS_QUEUE in $REGION: promotion steps and follow-ups wait there (retries: ${TASKS_RETRY[*]})"
  if probe gcloud tasks queues describe "$TASKS_QUEUE" --location="$REGION" --project="$PROJECT"; then
    # An existing queue gets the same bounded retries: one made by hand or by an earlier run may keep Cloud
    # Tasks' defaults, which retry a failing call for much longer. Only the retry settings are changed.
    run gcloud tasks queues update "$TASKS_QUEUE" --location="$REGION" --project="$PROJECT" "${TASKS_RETRY[@]}" \
      --format=none
  else
    run gcloud tasks queues create "$TASKS_QUEUE" --location="$REGION" --project="$PROJECT" "${TASKS_RETRY[@]}"
  fi
}

ensure_topic() {
  note "topic $TOPIC: Cloud Build publishes every build's status there once it exists"
  if ! probe gcloud pubsub topics describe "$TOPIC" --project="$PROJECT"; then
    run gcloud pubsub topics create "$TOPIC" --project="$PROJECT"
  fi
}

ensure_bucket() {
  note "bucket gs://$BUCKET: created only if missing"
  if ! probe gcloud storage buckets describe "gs://$BUCKET" --project="$PROJECT"; then
    run gcloud storage buckets create "gs://$BUCKET" --project="$PROJECT" --location="$REGION" \
      --uniform-bucket-level-access --public-access-prevention
  fi
}

ensure_service_account() {
  note "service account $SA: created only if missing"
  if ! probe gcloud iam service-accounts describe "$SA" --project="$PROJECT"; then
    run gcloud iam service-accounts create "$SA_NAME" --project="$PROJECT" \
      --display-name="postdeploy function" \
      --description="Runs the postdeploy Cloud Function: validates Cloud Run revisions after each build"
  fi
  capture PROJECT_NUMBER gcloud projects describe "$PROJECT" --format='value(projectNumber)'
}

# ensure_role ID TITLE DESCRIPTION PERMISSION...: a custom role in the project with exactly these
# permissions (created, or brought back and updated in place).
ensure_role() {
  local id=$1 title=$2 description=$3 state verb=create
  shift 3
  local args=(--project="$PROJECT" --title="$title" --description="$description" --permissions="$(joined "$@")" --stage=GA)
  if ((DRY_RUN)); then
    probe gcloud iam roles describe "$id" --project="$PROJECT" || true
    run gcloud iam roles create "$id" "${args[@]}"
    return 0
  fi
  if state=$(gcloud iam roles describe "$id" --project="$PROJECT" --format='value(deleted)' 2>/dev/null); then
    # A deleted custom role keeps its ID for a while; it must be undeleted before it can be used.
    [[ $state != True ]] || run gcloud iam roles undelete "$id" --project="$PROJECT" --format=none
    verb=update
  fi
  run gcloud iam roles "$verb" "$id" "${args[@]}" --format=none
}

# grant ROLE GCLOUD_ARGS...: gcloud GCLOUD_ARGS --member=serviceAccount:$SA --role=ROLE --condition=None --format=none,
# retried while IAM catches up: one binding for the function's account.
grant() {
  local role=$1
  shift
  run_retry gcloud "$@" --member="serviceAccount:$SA" --role="$role" --condition=None --format=none
}

# grant_on_queue ROLE: the same binding on the Cloud Tasks queue. `gcloud tasks queues add-iam-policy-binding`
# has no --condition flag (only its alpha has), and gcloud refuses a flag it does not know.
grant_on_queue() {
  run_retry gcloud tasks queues add-iam-policy-binding "$TASKS_QUEUE" --location="$REGION" --project="$PROJECT" \
    --member="serviceAccount:$SA" --role="$1" --format=none
}

# Whether the function may update the traffic of any named service: it rolls back on FAIL (on_fail: rollback)
# or is promoted in steps after a PASS (on_pass: promote).
any_traffic_update() {
  local entry name
  for entry in ${SERVICES[@]+"${SERVICES[@]}"}; do
    name=${entry#*/}
    [[ ${ROLLBACK[$name]:-0} == 1 || ${PROMOTE[$name]:-0} == 1 ]] && return 0
  done
  return 1
}

ensure_roles() {
  local function_perms=("${PERMS_RUN_READ[@]}")
  if ((NEED_LOGS)) || any_probe_job; then function_perms+=("${PERMS_LOGS[@]}"); fi
  if ((NEED_METRICS)); then function_perms+=("${PERMS_METRICS[@]}"); fi
  if any_probe_job || any_traffic_update; then function_perms+=("${PERMS_PROBE_PROJECT[@]}"); fi
  note "custom roles: what the enabled checks call, nothing more"
  ensure_role "$ROLE_FUNCTION" "postdeploy function" \
    "Read Cloud Run services and revisions, log entries and metrics (postdeploy)" "${function_perms[@]}"
  ensure_role "$ROLE_REPORTS" "postdeploy reports" \
    "Create, read and replace report objects; bound on the report bucket only (postdeploy)" "${PERMS_REPORTS[@]}"
  if any_probe_job; then
    ensure_role "$ROLE_PROBE_JOB" "postdeploy probe job" \
      "Update and run one postdeploy-probe job; bound on that job only (postdeploy)" "${PERMS_PROBE_JOB[@]}"
  fi
  if any_traffic_update; then
    ensure_role "$ROLE_ROLLBACK" "postdeploy rollback" \
      "Move a service's traffic back after a FAIL, or forward a step after a PASS; bound on that service only (postdeploy)" \
      "${PERMS_ROLLBACK[@]}"
  fi
}

grant_roles() {
  note "granting $SA only what it uses"
  grant "projects/$PROJECT/roles/$ROLE_FUNCTION" projects add-iam-policy-binding "$PROJECT"
  # Reports, the create-only claim object, latest.json and the index: on the report bucket only.
  grant "projects/$PROJECT/roles/$ROLE_REPORTS" storage buckets add-iam-policy-binding "gs://$BUCKET"
  local artifacts
  for artifacts in ${ARTIFACT_BUCKETS[@]+"${ARTIFACT_BUCKETS[@]}"}; do
    # List and read the JUnit files builds upload there (checks.tests).
    grant roles/storage.objectViewer storage buckets add-iam-policy-binding "gs://$artifacts"
  done
  if ((INVOKER_ALL)); then
    warn "--invoker-all-services: $SA may call every Cloud Run service in $PROJECT (roles/run.servicesInvoker; it cannot run jobs)"
    grant roles/run.servicesInvoker projects add-iam-policy-binding "$PROJECT"
  fi
}

# on_account ROLE EMAIL: ROLE for the function on the one service account EMAIL, never on the project; once a run.
on_account() {
  [[ $ON_ACCOUNTS != *" $1@$2 "* ]] || return 0
  ON_ACCOUNTS+="$1@$2 "
  grant "$1" iam service-accounts add-iam-policy-binding "$2" --project="$PROJECT"
}

# act_as EMAIL: the function may act as EMAIL (roles/iam.serviceAccountUser on that one account): attach it
# to its probe job, or, for its own account, put it on the OIDC token of a Cloud Task.
act_as() {
  on_account roles/iam.serviceAccountUser "$1"
}

# read_secret PROJECT ID: the function may read the versions of this one secret (a webhook), once a run.
read_secret() {
  [[ $READ_SECRETS != *" projects/$1/secrets/$2 "* ]] || return 0
  READ_SECRETS+="projects/$1/secrets/$2 "
  grant roles/secretmanager.secretAccessor secrets add-iam-policy-binding "$2" --project="$1"
}

given_runtime_sa() {
  local sa
  for sa in ${RUNTIME_SAS[@]+"${RUNTIME_SAS[@]}"}; do
    [[ $sa != "$1" ]] || return 0
  done
  return 1
}

grant_runtime_accounts() {
  ((${#RUNTIME_SAS[@]} > 0)) || return 0
  if ! any_probe_job; then
    warn "--runtime-sa not granted: no --service runs the imports probe with copy_env, so nothing runs as another account"
    return 0
  fi
  local sa
  for sa in "${RUNTIME_SAS[@]}"; do
    act_as "$sa"
  done
}

# Per --service: invoker on it, and when the config runs the imports probe for it, its probe job
# (created here, so the function never needs to create jobs) and the one runtime account it runs as.
grant_services() {
  if ((${#SERVICES[@]} == 0)); then
    note "no --service given: private services' health and smoke checks and every imports probe will be reported as not measured"
    return 0
  fi
  local i=0 entry region name job runtime granted compute_re='^[0-9]+-compute@developer\.gserviceaccount\.com$'
  for entry in "${SERVICES[@]}"; do
    i=$((i + 1))
    region=${entry%%/*}
    name=${entry#*/}
    if ((INVOKER_ALL)); then granted="no own invoker binding (--invoker-all-services)"; else granted="roles/run.invoker on it"; fi
    if [[ ${PROBE[$name]:-0} == 0 ]]; then
      granted+="; no imports probe configured"
    elif [[ ${COPY[$name]} == 1 ]]; then
      granted+="; its imports probe job ${JOB[$name]}, running as the service's own account"
    else
      granted+="; no probe job (copy_env: false)"
    fi
    note "service $name in $region: $granted"
    if ! found gcloud run services describe "$name" --region="$region" --project="$PROJECT" --format=none; then
      warn "service $name not found in $region: nothing granted for it; deploy it, then run this script again"
      continue
    fi
    if ((INVOKER_ALL == 0)); then
      grant roles/run.invoker run services add-iam-policy-binding "$name" --region="$region" --project="$PROJECT"
    fi
    if [[ ${ROLLBACK[$name]:-0} == 1 || ${PROMOTE[$name]:-0} == 1 ]]; then
      if [[ ${PROMOTE[$name]:-0} == 1 ]]; then
        note "service $name: on_pass: promote, so the function may update this service's traffic (role $ROLE_ROLLBACK on it only): forward a step after each PASS, back after a FAIL"
      else
        note "service $name: on_fail: rollback, so the function may update this service's traffic (role $ROLE_ROLLBACK on it only)"
      fi
      grant "projects/$PROJECT/roles/$ROLE_ROLLBACK" run services add-iam-policy-binding "$name" --region="$region" \
        --project="$PROJECT"
    fi
    [[ ${PROBE[$name]:-0} == 1 ]] || continue
    if [[ ${COPY[$name]} == 0 ]]; then
      # probe/runners.py leaves the job's identity unset then, so Cloud Run runs it as the project's
      # default compute account: acting as that one is the escalation this script avoids.
      warn "service $name: checks.imports.copy_env is false, so the probe job would run as the Compute Engine default account; no job is prepared and its imports check will be reported as not measured (set copy_env: true to run it as the service's own account)"
      continue
    fi
    capture "RUNTIME_SA_$i" gcloud run services describe "$name" --region="$region" --project="$PROJECT" \
      --format='value(spec.template.spec.serviceAccountName)'
    local runtime_var="RUNTIME_SA_$i" image_var="IMAGE_$i"
    runtime=${!runtime_var}
    if ((DRY_RUN == 0)); then
      [[ -n $runtime ]] || runtime="$PROJECT_NUMBER-compute@developer.gserviceaccount.com"
      if [[ $runtime =~ $compute_re ]] && ! given_runtime_sa "$runtime"; then
        warn "service $name runs as the Compute Engine default account $runtime (often Editor): postdeploy is not allowed to act as it, so no probe job is prepared. Give $name its own service account, or accept this one with --runtime-sa $runtime"
        continue
      fi
    fi
    act_as "$runtime"
    job=${JOB[$name]}
    capture "$image_var" gcloud run services describe "$name" --region="$region" --project="$PROJECT" \
      --format='value(spec.template.spec.containers[0].image)'
    if probe gcloud run jobs describe "$job" --region="$region" --project="$PROJECT"; then
      # An existing job may run as another account; the function must only ever run it as this one.
      run gcloud run jobs update "$job" --region="$region" --project="$PROJECT" --service-account="$runtime" \
        --format=none
    else
      # A placeholder: the function replaces image, command and environment before each run.
      run gcloud run jobs create "$job" --region="$region" --project="$PROJECT" --image="${!image_var}" \
        --service-account="$runtime" --labels=managed-by=postdeploy --tasks=1 --max-retries=0 --format=none
    fi
    run_retry gcloud run jobs add-iam-policy-binding "$job" --region="$region" --project="$PROJECT" \
      --member="serviceAccount:$SA" --role="projects/$PROJECT/roles/$ROLE_PROBE_JOB" --format=none
  done
}

# Earlier versions of this script granted broad roles on the project and objectAdmin on the bucket.
# They are revoked last, once the narrow ones are in place (the trigger, too, relied on the
# project-wide run.invoker until deploy_function granted it on the function alone).
revoke_legacy_roles() {
  note "removing broad roles an earlier deploy.sh granted, if any"
  capture GRANTED_ROLES gcloud projects get-iam-policy "$PROJECT" --flatten='bindings[].members' \
    --filter="bindings.members=serviceAccount:$SA" --format='value(bindings.role)'
  capture BUCKET_BINDINGS gcloud storage buckets get-iam-policy "gs://$BUCKET" --flatten='bindings[].members' \
    --format='csv[no-heading](bindings.role,bindings.members)'
  if ((DRY_RUN)); then
    note "a real run revokes those of ${LEGACY_PROJECT_ROLES[*]} found in \$GRANTED_ROLES, and $LEGACY_BUCKET_ROLE on gs://$BUCKET"
    return 0
  fi
  local role
  for role in "${LEGACY_PROJECT_ROLES[@]}"; do
    if grep -qxF -- "$role" <<<"$GRANTED_ROLES"; then
      run gcloud projects remove-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA" --role="$role" \
        --condition=None --format=none
    fi
  done
  if grep -qxF -- "$LEGACY_BUCKET_ROLE,serviceAccount:$SA" <<<"$BUCKET_BINDINGS"; then
    run gcloud storage buckets remove-iam-policy-binding "gs://$BUCKET" --member="serviceAccount:$SA" \
      --role="$LEGACY_BUCKET_ROLE" --format=none
  fi
}

ensure_secret() {
  local secret_project secret_id version
  if ((NO_SLACK)); then
    note "--no-slack: no webhook secret and no access to one"
    return 0
  fi
  if [[ -n $SLACK_SECRET ]]; then
    local full_re='^projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/secrets/([A-Za-z0-9_-]{1,255})(/versions/([A-Za-z0-9_-]+))?$'
    local short_re='^[A-Za-z0-9_-]{1,255}$'
    if [[ $SLACK_SECRET =~ $full_re ]]; then
      secret_project=${BASH_REMATCH[1]}
      secret_id=${BASH_REMATCH[2]}
      version=${BASH_REMATCH[4]:-latest}
    elif [[ $SLACK_SECRET =~ $short_re ]]; then
      secret_project=$PROJECT
      secret_id=$SLACK_SECRET
      version=latest
    else
      die "expected --slack-secret NAME or projects/PROJECT/secrets/NAME[/versions/V], got '$SLACK_SECRET'"
    fi
    note "Slack webhook: existing secret $secret_id in $secret_project (not modified)"
    if ! probe gcloud secrets describe "$secret_id" --project="$secret_project" && ((DRY_RUN == 0)); then
      fail "expected secret '$secret_id' in project $secret_project, got nothing (create it, or pass --slack-webhook)"
    fi
  else
    secret_project=$PROJECT
    secret_id=$DEFAULT_SECRET
    version=latest
    note "Slack webhook: secret $secret_id (the value is never printed)"
    if probe gcloud secrets describe "$secret_id" --project="$secret_project"; then
      if [[ -z $WEBHOOK ]]; then
        probe gcloud secrets versions describe latest --secret="$secret_id" --project="$secret_project" ||
          fail "secret $secret_id has no usable version and no webhook was given (pass --slack-webhook URL or --slack-webhook -)"
        note "no webhook given: keeping the stored one"
      elif [[ $(gcloud secrets versions access latest --secret="$secret_id" --project="$secret_project" 2>/dev/null) == "$WEBHOOK" ]]; then
        note "the stored webhook is already this one: no new version"
      else
        run_with_webhook gcloud secrets versions add "$secret_id" --project="$secret_project" --data-file=-
      fi
    else
      if [[ -z $WEBHOOK ]] && ((DRY_RUN == 0)); then
        fail "expected a Slack webhook to create secret $secret_id, got nothing (pass --slack-webhook URL, --slack-webhook -, --slack-secret NAME or --no-slack)"
      fi
      run gcloud secrets create "$secret_id" --project="$secret_project" --replication-policy=automatic
      run_with_webhook gcloud secrets versions add "$secret_id" --project="$secret_project" --data-file=-
    fi
  fi
  # Read the webhook at cold start - this one secret only.
  read_secret "$secret_project" "$secret_id"
  SECRET_VERSION="projects/$secret_project/secrets/$secret_id/versions/$version"
}

# verdict_topic: the topic is created when it is in this project and missing, and the function may publish to it
# (roles/pubsub.publisher on that topic only); without one configured, nothing.
grant_verdict_topics() {
  local topic project id
  for topic in ${VERDICT_TOPICS[@]+"${VERDICT_TOPICS[@]}"}; do
    project=${topic#projects/}
    project=${project%%/*}
    id=${topic##*/}
    note "verdict events: roles/pubsub.publisher on $topic only"
    if [[ $project == "$PROJECT" ]] && ! probe gcloud pubsub topics describe "$id" --project="$project"; then
      run gcloud pubsub topics create "$id" --project="$project"
    fi
    run_retry gcloud pubsub topics add-iam-policy-binding "$id" --project="$project" \
      --member="serviceAccount:$SA" --role=roles/pubsub.publisher --format=none
  done
}

# notify: each route's webhook is read from its own secret (report/publish.py), maybe in another project. The
# function may read those secrets and no other; without routes, nothing. A route naming a secret that is not there
# stops the run here rather than failing every Slack message later.
grant_route_secrets() {
  local secret project id
  for secret in ${ROUTE_SECRETS[@]+"${ROUTE_SECRETS[@]}"}; do
    project=${secret#projects/}
    project=${project%%/*}
    id=${secret##*/}
    note "notify: roles/secretmanager.secretAccessor on secret $id in $project only (a route's webhook)"
    if ! found gcloud secrets describe "$id" --project="$project" --format=none; then
      fail "expected secret '$id' in project $project (a notify route's webhook_secret), got nothing or no access to it: create it and add the webhook as a version, or fix the route"
    fi
    read_secret "$project" "$id"
  done
}

# signed_url_ttl: report links are V4 signed URLs, signed as the function's own account through IAM Credentials
# signBlob (sources/gcp.py), which needs iam.serviceAccounts.signBlob on that account: roles/iam.serviceAccountTokenCreator
# on itself only. Without signed_url_ttl in any section, nothing.
grant_signing() {
  ((SIGNS)) || return 0
  note "signed report links: $SA may sign as itself (roles/iam.serviceAccountTokenCreator on $SA only)"
  on_account roles/iam.serviceAccountTokenCreator "$SA"
}

# Cloud Tasks: the function adds promotion steps and follow-ups to its queue, each carrying an OIDC token of
# its own account for NAME-tasks. Creating a task with a token needs actAs on the token's account (the Tasks
# API's OidcToken.service_account_email); the Cloud Tasks service agent then mints the token with
# roles/cloudtasks.serviceAgent, which Google grants it on the project when the API is enabled.
grant_scheduling() {
  ((SCHEDULES)) || return 0
  note "scheduling: $SA may add tasks to queue $TASKS_QUEUE only (roles/cloudtasks.enqueuer) and act as itself (roles/iam.serviceAccountUser on $SA only), so that each task carries its OIDC token"
  grant_on_queue roles/cloudtasks.enqueuer
  act_as "$SA"
  note "scheduling: only a --service may have its traffic moved; name each service with on_pass: promote"
}

# Eventarc delivers Pub/Sub messages with an OIDC token minted by the Pub/Sub service agent for the
# trigger's service account. Projects that enabled Pub/Sub before 2021-04-08 must grant this
# explicitly; later ones have it already. Granted on our service account only, not project-wide.
grant_pubsub_agent() {
  note "letting the Pub/Sub service agent sign push requests as $SA"
  if ! run_retry gcloud iam service-accounts add-iam-policy-binding "$SA" --project="$PROJECT" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/iam.serviceAccountTokenCreator \
    --condition=None --format=none; then
    warn "could not grant roles/iam.serviceAccountTokenCreator to $PUBSUB_AGENT; only projects that enabled Pub/Sub before 2021-04-08 need it"
  fi
}

# The function's environment: where reports go, the Slack secret when there is one, and once NAME-tasks has a
# URL, where to schedule (sources/tasks.py reads the three together and refuses a queue without a URL).
function_env() {
  local env_vars="POSTDEPLOY_REPORTS=gs://$BUCKET/reports"
  [[ -z $SECRET_VERSION ]] || env_vars+=",POSTDEPLOY_SLACK_WEBHOOK_SECRET=$SECRET_VERSION"
  if [[ -n $TASKS_URL ]]; then
    env_vars+=",POSTDEPLOY_TASKS_QUEUE=projects/$PROJECT/locations/$REGION/queues/$TASKS_QUEUE"
    env_vars+=",POSTDEPLOY_TASKS_URL=$TASKS_URL,POSTDEPLOY_TASKS_SERVICE_ACCOUNT=$SA"
  fi
  printf '%s' "$env_vars"
}

# deploy_http_function NAME ENTRY_POINT: NAME from the same sources, runtime, account, limits and environment
# as the main function, behind an HTTP entry point that requires authentication (callers need run.invoker).
deploy_http_function() {
  run gcloud functions deploy "$1" --gen2 --project="$PROJECT" --region="$REGION" \
    --runtime="$RUNTIME" --source="$STAGING" --entry-point="$2" --trigger-http --no-allow-unauthenticated \
    --timeout="$TIMEOUT" --memory="$MEMORY" --max-instances="$MAX_INSTANCES" \
    --service-account="$SA" --set-env-vars="$(function_env)"
}

# on_pass: promote and follow_up: NAME-tasks receives the Cloud Tasks the function schedules (entry point
# `scheduled`), each with an OIDC token of $SA, the one account that may invoke it. Deployed before NAME, which
# needs its URL; it needs that URL too, to schedule a promotion's next step. A new NAME-tasks has no URL until it
# exists, so the first run deploys it without the scheduling variables, reads the URL, and deploys it again.
# Its ingress stays open, like NAME-rerun: authentication keeps every other caller out.
deploy_tasks_function() {
  ((SCHEDULES)) || return 0
  local name="$FUNCTION-tasks"
  local where=(--v2 --region="$REGION" --project="$PROJECT")
  note "deploying $name: Cloud Tasks call it for promotion steps and follow-ups, with an OIDC token of $SA"
  if ! probe gcloud functions describe "$name" "${where[@]}" --format=none; then
    note "$name not found: deployed once to learn its URL, then again with it"
    deploy_http_function "$name" "$TASKS_ENTRY_POINT"
  fi
  capture TASKS_URL gcloud functions describe "$name" "${where[@]}" --format='value(serviceConfig.uri)'
  if ((DRY_RUN == 0)) && [[ $TASKS_URL != https://* ]]; then
    fail "expected $name to have an https:// URL (serviceConfig.uri), got '$TASKS_URL'"
  fi
  deploy_http_function "$name" "$TASKS_ENTRY_POINT"
  run_retry gcloud functions add-invoker-policy-binding "$name" --region="$REGION" --project="$PROJECT" \
    --member="serviceAccount:$SA" --format=none
}

deploy_function() {
  note "deploying $FUNCTION (build and rollout take a few minutes)"
  local env_vars
  env_vars=$(function_env)
  # internal-only ingress: Eventarc/Pub/Sub deliveries from the same project count as internal,
  # so nothing else on the internet can reach the function. --max-instances bounds what a flood of
  # builds (or of redeliveries) can cost.
  run gcloud functions deploy "$FUNCTION" --gen2 --project="$PROJECT" --region="$REGION" \
    --runtime="$RUNTIME" --source="$STAGING" --entry-point="$ENTRY_POINT" \
    --trigger-topic="$TOPIC" --trigger-service-account="$SA" --retry \
    --timeout="$TIMEOUT" --memory="$MEMORY" --max-instances="$MAX_INSTANCES" \
    --service-account="$SA" --ingress-settings=internal-only --set-env-vars="$env_vars"
  # The trigger runs as $SA: it may invoke this function (its Cloud Run service), nothing else.
  run_retry gcloud functions add-invoker-policy-binding "$FUNCTION" --region="$REGION" --project="$PROJECT" \
    --member="serviceAccount:$SA" --format=none
}

# --rerun-invoker: NAME-rerun, the same sources and account behind an HTTP entry point that requires
# authentication; only the members named may call it. Without the flag there is no HTTP surface at all.
deploy_rerun_function() {
  ((${#RERUN_INVOKERS[@]} > 0)) || return 0
  local member
  note "deploying $FUNCTION-rerun: POST {build_id, service} validates a stored report's revision again; callers: ${RERUN_INVOKERS[*]}"
  deploy_http_function "$FUNCTION-rerun" rerun
  for member in "${RERUN_INVOKERS[@]}"; do
    run_retry gcloud functions add-invoker-policy-binding "$FUNCTION-rerun" --region="$REGION" --project="$PROJECT" \
      --member="$member" --format=none
  done
}

# The trigger's subscription retries a failing delivery with backoff; after MAX_DELIVERY_ATTEMPTS it
# hands the message to a dead-letter topic instead of redelivering it for up to a day.
configure_delivery() {
  local dead_letter="$FUNCTION-dead-letter"
  note "dead-lettering: after $MAX_DELIVERY_ATTEMPTS deliveries a message goes to topic $dead_letter, kept $DEAD_LETTER_RETENTION in subscription $dead_letter"
  capture TRIGGER gcloud functions describe "$FUNCTION" --v2 --region="$REGION" --project="$PROJECT" \
    --format='value(eventTrigger.trigger)'
  capture SUBSCRIPTION gcloud eventarc triggers describe "$TRIGGER" --format='value(transport.pubsub.subscription)'
  if ((DRY_RUN == 0)) && [[ -z $SUBSCRIPTION ]]; then
    fail "expected the Eventarc trigger of $FUNCTION to name its Pub/Sub subscription, got nothing"
  fi
  if ! probe gcloud pubsub topics describe "$dead_letter" --project="$PROJECT"; then
    run gcloud pubsub topics create "$dead_letter" --project="$PROJECT"
  fi
  # Messages published to a topic without a subscription are lost; this one never expires.
  if ! probe gcloud pubsub subscriptions describe "$dead_letter" --project="$PROJECT"; then
    run gcloud pubsub subscriptions create "$dead_letter" --project="$PROJECT" --topic="$dead_letter" \
      --message-retention-duration="$DEAD_LETTER_RETENTION" --expiration-period=never
  fi
  # Pub/Sub forwards as its service agent: publish to the dead-letter topic, acknowledge on the
  # trigger's subscription.
  run_retry gcloud pubsub topics add-iam-policy-binding "$dead_letter" --project="$PROJECT" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher --format=none
  run_retry gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber --format=none
  run gcloud pubsub subscriptions update "$SUBSCRIPTION" \
    --dead-letter-topic="projects/$PROJECT/topics/$dead_letter" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" \
    --min-retry-delay="$MIN_RETRY_DELAY" --max-retry-delay="$MAX_RETRY_DELAY" --format=none
}

summary() {
  if ((DRY_RUN)); then
    note "dry run: nothing was changed"
    return 0
  fi
  note "done: $FUNCTION validates every Cloud Run deploy built in $PROJECT"
  note "reports: gs://$BUCKET/reports/SERVICE/BUILD_ID/report.html"
  note "logs:    gcloud functions logs read $FUNCTION --gen2 --region=$REGION --project=$PROJECT"
  note "failed deliveries: gcloud pubsub subscriptions pull $FUNCTION-dead-letter --project=$PROJECT"
  ((SCHEDULES == 0)) ||
    note "scheduled:  gcloud tasks list --queue=$TASKS_QUEUE --location=$REGION --project=$PROJECT"
}

main() {
  parse_args "$@"
  validate_args
  SA="$SA_NAME@$PROJECT.iam.gserviceaccount.com"
  read_webhook
  check_sources
  ((DRY_RUN == 0)) || note "dry run: printing the commands instead of running them"
  read_features
  stage_sources
  check_config
  check_gcloud
  enable_apis
  ensure_topic
  ensure_bucket
  ensure_service_account
  ensure_queue
  PUBSUB_AGENT="service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
  ensure_roles
  grant_roles
  grant_runtime_accounts
  grant_services
  ensure_secret
  grant_route_secrets
  grant_verdict_topics
  grant_scheduling
  grant_signing
  grant_pubsub_agent
  deploy_tasks_function
  deploy_function
  deploy_rerun_function
  configure_delivery
  revoke_legacy_roles
  summary
}

STAGING=""
SA=""
SECRET_VERSION=""
PROJECT_NUMBER=""
PUBSUB_AGENT=""
BUCKET_NAME=""
TASKS_URL=""
main "$@"
