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
# The function's own APIs, plus iam and cloudresourcemanager, which this script needs to create the
# service account and edit the project's IAM policy (often on already, but not in every project).
readonly APIS=(
  cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  eventarc.googleapis.com pubsub.googleapis.com logging.googleapis.com
  monitoring.googleapis.com secretmanager.googleapis.com storage.googleapis.com
  artifactregistry.googleapis.com iam.googleapis.com cloudresourcemanager.googleapis.com
)
# What the function needs at run time; tests/, deploy/ and dev files stay out of the upload.
readonly SOURCE_FILES=(main.py requirements.txt)
readonly SOURCE_PACKAGES=(entry trigger core checks probe sources report)

PROJECT=""
REGION=""
BUCKET=""
FUNCTION=postdeploy
CONFIG="$REPO_ROOT/deploy/postdeploy.example.yaml"
SLACK_SECRET=""
WEBHOOK=""
WEBHOOK_GIVEN=0 # 1: --slack-webhook was on the command line (a URL or "-")
RUNTIME_SAS=()  # --runtime-sa: the service accounts the validated services run as
DRY_RUN=0
SEEN=" "

usage() {
  cat <<EOF
Usage: deploy/deploy.sh --project PROJECT_ID --region REGION --bucket BUCKET [options]

Deploys postdeploy as a 2nd-gen Cloud Function triggered by Cloud Build's "$TOPIC" topic,
with everything it needs: APIs, the topic, the report bucket, a least-privilege service account,
the Slack webhook in Secret Manager. Safe to run again: it only creates what is missing.

Required:
  --project PROJECT_ID     Google Cloud project to deploy into (the builds' project)
  --region REGION          region of the function and of a newly created bucket, e.g. us-central1
  --bucket BUCKET          Cloud Storage bucket for reports (created if missing); reports go
                           under gs://BUCKET/reports/

Slack (one of these; without either, the webhook is read from stdin or a hidden prompt, and an
empty answer keeps the webhook already stored in secret $DEFAULT_SECRET):
  --slack-webhook URL      store URL in Secret Manager secret $DEFAULT_SECRET (a new version
                           only when it changed). "-" reads it from stdin, which keeps it out of
                           your shell history and the process list.
  --slack-secret NAME      use an existing secret instead: NAME, projects/P/secrets/NAME or
                           projects/P/secrets/NAME/versions/V (nothing is written to it)

Options:
  --function NAME          function name (default: postdeploy)
  --config FILE            postdeploy config, shipped beside main.py as postdeploy.yaml
                           (default: deploy/postdeploy.example.yaml)
  --runtime-sa EMAIL       a service account the validated Cloud Run services run as; repeat it
                           for each. The imports probe job runs as that account, so the function
                           may act as these accounts only. Without it: every account in the project.
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
    --bucket) echo BUCKET ;;
    --function) echo NAME ;;
    --config) echo FILE ;;
    --slack-webhook) echo URL ;;
    --slack-secret) echo NAME ;;
    --runtime-sa) echo EMAIL ;;
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
      --dry-run)
        ((inline == 0)) || die "--dry-run takes no value"
        DRY_RUN=1
        ;;
      --project | --region | --bucket | --function | --config | --slack-webhook | --slack-secret | --runtime-sa)
        [[ $flag == --runtime-sa || $SEEN != *" $flag "* ]] || die "$flag given twice; expected it once"
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

validate_args() {
  [[ -n $PROJECT ]] || die "expected --project PROJECT_ID, got nothing"
  [[ -n $REGION ]] || die "expected --region REGION, got nothing"
  [[ -n $BUCKET ]] || die "expected --bucket BUCKET, got nothing"

  local project_re='^[a-z][a-z0-9-]{4,28}[a-z0-9]$'
  [[ $PROJECT =~ $project_re ]] ||
    die "expected --project to be a project ID (6-30 lowercase letters, digits, hyphens; not the project number or display name), got '$PROJECT'"
  local region_re='^[a-z]+-[a-z]+[0-9]+$'
  [[ $REGION =~ $region_re ]] || die "expected --region to be a region such as us-central1, got '$REGION'"

  local bucket_arg=$BUCKET bucket_re='^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$'
  BUCKET=${BUCKET#gs://}
  BUCKET=${BUCKET%/}
  [[ $BUCKET =~ $bucket_re && $BUCKET != goog* ]] ||
    die "expected --bucket to be a bucket name (3-222 lowercase letters, digits, - _ .; no path), got '$bucket_arg'"

  local function_re='^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'
  [[ $FUNCTION =~ $function_re ]] ||
    die "expected --function to be 1-63 lowercase letters, digits or hyphens starting with a letter, got '$FUNCTION'"

  [[ $CONFIG != gs://* ]] ||
    die "expected --config to be a local file, got '$CONFIG' (to read the config from Cloud Storage, set POSTDEPLOY_CONFIG on the function yourself)"
  [[ -f $CONFIG && -r $CONFIG ]] || die "expected --config FILE to be a readable file, got '$CONFIG' (not found)"
  CONFIG="$(cd -- "$(dirname -- "$CONFIG")" && pwd)/$(basename -- "$CONFIG")"

  local sa sa_re='^[a-z0-9-]+@[a-z0-9.-]+\.iam\.gserviceaccount\.com$|^[0-9]+-compute@developer\.gserviceaccount\.com$'
  for sa in "${RUNTIME_SAS[@]}"; do
    [[ $sa =~ $sa_re ]] ||
      die "expected --runtime-sa to be a service account email (NAME@PROJECT.iam.gserviceaccount.com or PROJECT_NUMBER-compute@developer.gserviceaccount.com), got '$sa'"
  done

  if [[ -n $SLACK_SECRET && $WEBHOOK_GIVEN == 1 ]]; then
    die "expected one of --slack-webhook and --slack-secret, got both"
  fi
}

# --- printing and running commands ---------------------------------------------------------------

# Values only known while running (the staging folder, the project number) are printed in dry-run
# as shell variables, so the printed plan still reads as runnable shell.
readonly PLACEHOLDER_STAGING='@STAGING@'
readonly PLACEHOLDER_PROJECT_NUMBER='@PROJECT_NUMBER@'

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
  local out="" a
  for a in "$@"; do
    out+="${out:+ }$(quote_arg "$a")"
  done
  # shellcheck disable=SC2016 # literal "$VAR" text, expanded by whoever runs the printed plan
  local staging='"$STAGING"' number='"$PROJECT_NUMBER"'
  out=${out//"$PLACEHOLDER_STAGING"/$staging}
  out=${out//"$PLACEHOLDER_PROJECT_NUMBER"/$number}
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

# capture VAR command...: VAR=$(command). Dry-run sets VAR to a placeholder.
# shellcheck disable=SC2016 # the printed "$(...)" is meant literally
capture() {
  local var=$1 value
  shift
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

# IAM is eventually consistent: a service account created seconds ago can still be "not found" by
# set-iam-policy calls, so bindings are retried with backoff.
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

# --- inputs ----------------------------------------------------------------------------------------

trim() {
  local s=$1
  s=${s//$'\r'/}
  s=${s#"${s%%[![:space:]]*}"}
  s=${s%"${s##*[![:space:]]}"}
  printf '%s' "$s"
}

read_webhook() {
  if [[ -n $SLACK_SECRET ]]; then
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
    note "no --slack-webhook/--slack-secret: a real run reads the webhook from stdin or a hidden prompt"
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
  local python="" rc=0
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then
    python=$REPO_ROOT/.venv/bin/python
  elif command -v python3 >/dev/null 2>&1; then
    python=python3
  else
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

enable_apis() {
  note "enabling APIs (no-op for those already on)"
  run gcloud services enable "${APIS[@]}" --project="$PROJECT"
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
}

bind_project_role() {
  run_retry gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA" \
    --role="$1" --condition=None --format=none
}

grant_roles() {
  note "granting $SA only what it uses"
  # Resolve the build's service and revision (services.get, revisions.list) in any region, and run the
  # imports probe as a Cloud Run job in the revision's image (jobs.create/update/run with overrides).
  bind_project_role roles/run.developer
  # The probe job runs as the revision's own service account, which the function must be allowed to act as:
  # on the accounts given with --runtime-sa only, else on every account of the project.
  if ((${#RUNTIME_SAS[@]} > 0)); then
    local runtime_sa
    for runtime_sa in "${RUNTIME_SAS[@]}"; do
      run_retry gcloud iam service-accounts add-iam-policy-binding "$runtime_sa" --project="$PROJECT" \
        --member="serviceAccount:$SA" --role=roles/iam.serviceAccountUser --condition=None --format=none
    done
  else
    note "roles/iam.serviceAccountUser on the whole project: pass --runtime-sa EMAIL (once per account your services run as) to narrow it"
    bind_project_role roles/iam.serviceAccountUser
  fi
  # Read the new revision's error logs and compare them with the previous revision's.
  bind_project_role roles/logging.viewer
  # Read Cloud Run request/latency/memory metrics per revision.
  bind_project_role roles/monitoring.viewer
  # Mint ID tokens accepted by private services (health and smoke probes); it also lets the
  # Eventarc trigger, which runs as this same account, invoke the function itself.
  bind_project_role roles/run.invoker
  # Write reports, the create-only claim object and latest.json/index (overwrites need delete),
  # and read earlier reports - on the report bucket only, not project-wide.
  run_retry gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --member="serviceAccount:$SA" \
    --role=roles/storage.objectAdmin --condition=None --format=none
}

# Eventarc delivers Pub/Sub messages with an OIDC token minted by the Pub/Sub service agent for the
# trigger's service account. Projects that enabled Pub/Sub before 2021-04-08 must grant this
# explicitly; later ones have it already. Granted on our service account only, not project-wide.
grant_pubsub_agent() {
  capture PROJECT_NUMBER gcloud projects describe "$PROJECT" --format='value(projectNumber)'
  local agent="service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
  note "letting the Pub/Sub service agent sign push requests as $SA"
  if ! run_retry gcloud iam service-accounts add-iam-policy-binding "$SA" --project="$PROJECT" \
    --member="serviceAccount:$agent" --role=roles/iam.serviceAccountTokenCreator \
    --condition=None --format=none; then
    warn "could not grant roles/iam.serviceAccountTokenCreator to $agent; only projects that enabled Pub/Sub before 2021-04-08 need it"
  fi
}

ensure_secret() {
  local secret_project secret_id version
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
        fail "expected a Slack webhook to create secret $secret_id, got nothing (pass --slack-webhook URL, --slack-webhook - or --slack-secret NAME)"
      fi
      run gcloud secrets create "$secret_id" --project="$secret_project" --replication-policy=automatic
      run_with_webhook gcloud secrets versions add "$secret_id" --project="$secret_project" --data-file=-
    fi
  fi
  # Read the webhook at cold start - this one secret only.
  run_retry gcloud secrets add-iam-policy-binding "$secret_id" --project="$secret_project" \
    --member="serviceAccount:$SA" --role=roles/secretmanager.secretAccessor --condition=None --format=none
  SECRET_VERSION="projects/$secret_project/secrets/$secret_id/versions/$version"
}

deploy_function() {
  note "deploying $FUNCTION (build and rollout take a few minutes)"
  # internal-only ingress: Eventarc/Pub/Sub deliveries from the same project count as internal,
  # so nothing else on the internet can reach the function.
  run gcloud functions deploy "$FUNCTION" --gen2 --project="$PROJECT" --region="$REGION" \
    --runtime="$RUNTIME" --source="$STAGING" --entry-point="$ENTRY_POINT" \
    --trigger-topic="$TOPIC" --trigger-service-account="$SA" --retry \
    --timeout="$TIMEOUT" --memory="$MEMORY" --service-account="$SA" --ingress-settings=internal-only \
    --set-env-vars="POSTDEPLOY_REPORTS=gs://$BUCKET/reports,POSTDEPLOY_SLACK_WEBHOOK_SECRET=$SECRET_VERSION"
}

summary() {
  if ((DRY_RUN)); then
    note "dry run: nothing was changed"
    return 0
  fi
  note "done: $FUNCTION validates every Cloud Run deploy built in $PROJECT"
  note "reports: gs://$BUCKET/reports/SERVICE/BUILD_ID/report.html"
  note "logs:    gcloud functions logs read $FUNCTION --gen2 --region=$REGION --project=$PROJECT"
}

main() {
  parse_args "$@"
  validate_args
  SA="$SA_NAME@$PROJECT.iam.gserviceaccount.com"
  read_webhook
  check_sources
  ((DRY_RUN == 0)) || note "dry run: printing the commands instead of running them"
  stage_sources
  check_config
  check_gcloud
  enable_apis
  ensure_topic
  ensure_bucket
  ensure_service_account
  grant_roles
  ensure_secret
  grant_pubsub_agent
  deploy_function
  summary
}

STAGING=""
SA=""
SECRET_VERSION=""
PROJECT_NUMBER=""
main "$@"
