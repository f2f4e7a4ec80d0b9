"""The shell scripts of HyperShift's managed etcd pods, as text.

Sources (openshift/hypershift):
  * reset-member: control-plane-operator/controllers/hostedcontrolplane/v2/assets/etcd/statefulset.yaml
    (initContainers[reset-member].args[1]);
  * etcd-init:    control-plane-operator/controllers/hostedcontrolplane/etcd/etcd-init.sh
    (the container is built by buildEtcdInitContainer in etcd/statefulset.go, env RESTORE_URL_ETCD).

One deliberate difference in reset-member: upstream talks to `https://etcd-client:2379`, a Service
that balances over the *ready* members. The simulated cluster DNS has no short names and no
readiness-aware balancing, so the script is rendered with the members' own names
(`https://etcd-N.etcd-discovery.<ns>.svc:2379`, etcdctl fails over between them), which is what the
Service amounts to: the member that is starting is not listening, the others answer.

One in etcd-init: the snapshot is downloaded to a file of its own (`mktemp /tmp/snapshot.XXXXXX`,
removed on exit), not `/tmp/snapshot`; not `/tmp/snapshot.$$` either: in a container's command
Kubernetes turns `$$` into `$`. A real container has a /tmp of its own; the simulator's containers share the
host's (see manifests.py), and the members of a HighlyAvailable cluster restore at the same time:
one member's curl overwrote the file another was restoring from, the restore failed half-way, and
the retried etcd-init found /var/lib/data not empty and started etcd on the remains (a CI flake:
dr-migrate's destination with one member that never became healthy).
"""

from __future__ import annotations

RESET_MEMBER_TEMPLATE = """#!/bin/bash

set -eu

# This script checks whether the data directory of this etcd member is empty.
# If it is, and there is a functional etcd cluster, then it ensures that a member
# corresponding to this pod does not exist in the cluster so it can be added
# as a new member.

# Setup the etcdctl environment
export ETCDCTL_API=3
export ETCDCTL_CACERT=/etc/etcd/tls/etcd-ca/ca.crt
export ETCDCTL_CERT=/etc/etcd/tls/server/server.crt
export ETCDCTL_KEY=/etc/etcd/tls/server/server.key
export ETCDCTL_ENDPOINTS={endpoints}

echo "new" > /etc/etcd/clusterstate/state

if [[ ! -f /var/lib/data/member/snap/db ]]; then
  echo "No existing etcd data found"
  echo "Checking if cluster is functional"
  if etcdctl {probe_flags}member list; then
    echo "Cluster is functional"
    MEMBER_ID=$(etcdctl member list -w simple | grep "${{HOSTNAME}}" | awk -F, '{{ print $1 }}')
    if [[ -n "${{MEMBER_ID}}" ]]; then
      echo "A member with this name (${{HOSTNAME}}) already exists, removing"
      etcdctl member remove "${{MEMBER_ID}}"
      echo "Adding new member"
      etcdctl member add ${{HOSTNAME}} --peer-urls https://${{HOSTNAME}}.{discovery}.${{NAMESPACE}}.svc:2380
      echo "existing" > /etc/etcd/clusterstate/state
    else
      echo "A member does not exist with name (${{HOSTNAME}}), nothing to do"
    fi
  else
    echo "Cannot list members in cluster, so likely not up yet"
  fi
else
  echo "Snapshot db exists, member has data"
fi
"""

ETCD_INIT = """# If /var/lib/data is not empty we exit early, since this means an etcd database already exists
mkdir -p /var/lib/data
[ "$(ls -A /var/lib/data)" ] && echo "/var/lib/data not empty, not restoring snapshot" && exit 0

SNAPSHOT=$(mktemp /tmp/snapshot.XXXXXX)
trap 'rm -f "$SNAPSHOT"' EXIT
RESTORE_URL_VAR="RESTORE_URL_ETCD"
RESTORE_URL=${!RESTORE_URL_VAR}

# When downloading from S3, curl can succeed even if the object doesn't exist
# and also when a pre-signed URL is expired.
# In this case we get an XML file which can be detected with `file` so we show
# the contents via the logs then exit with an error status
curl -o "$SNAPSHOT" ${RESTORE_URL}
file "$SNAPSHOT" | grep -q XML && cat "$SNAPSHOT" && exit 1

# FIXME: etcdctl restore is deprecated but the etcd container doesn't have etcdutl
env ETCDCTL_API=3 /usr/bin/etcdctl -w table snapshot status "$SNAPSHOT"
env ETCDCTL_API=3 /usr/bin/etcdctl snapshot restore "$SNAPSHOT" --data-dir=/var/lib/data
"""


def reset_member_script(namespace_var_endpoints: list[str], discovery_service: str = "etcd-discovery",
                        probe_timeout: str | None = None) -> str:
    """The reset-member script; `namespace_var_endpoints` are client URLs (may use ${NAMESPACE}).

    `probe_timeout` (a test-speed knob) bounds the first `etcdctl member list`, which otherwise
    waits etcdctl's 5 s command timeout when no member is up yet (etcdctl 3.5.1 ignores the
    ETCDCTL_COMMAND_TIMEOUT variable, so it has to be a flag)."""
    flags = f"--dial-timeout={probe_timeout} --command-timeout={probe_timeout} " if probe_timeout else ""
    return RESET_MEMBER_TEMPLATE.format(endpoints=",".join(namespace_var_endpoints), discovery=discovery_service,
                                        probe_flags=flags)
