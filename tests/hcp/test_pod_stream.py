"""Reading a pod's stdout through the exec API (hcp.pod_exec.stream_stdout), on the simulated world:
a command that says on stderr that its data is complete hands the data over while it goes on."""

from __future__ import annotations

from kubernetes import client

from hcp import pod_exec
from hcp.etcd_member import list_members

from tests.hcp.conftest import NAMESPACE


def test_data_is_handed_over_at_the_mark_while_the_command_goes_on(mgmt1_api: client.ApiClient) -> None:
    pod = list_members(mgmt1_api, NAMESPACE)[0]
    gate = "/var/lib/data/hcp-test-stream-gate"
    # 100 KiB (less than one chunk: without the mark it would wait for the command's end), the mark,
    # then the command waits for a file only this test creates, after it has the data
    script = (f"rm -f {gate}; head -c 102400 /dev/zero; echo 'data done' >&2; n=0; "
              f"while [ ! -f {gate} ]; do n=$((n+1)); [ $n -gt 400 ] && exit 3; sleep 0.05; done; "
              "echo 'facts after' >&2")
    live, sink = bytearray(), bytearray()
    chunks = pod_exec.stream_stdout(mgmt1_api, NAMESPACE, pod, "etcd", ["sh", "-c", script], chunk_bytes=1 << 20,
                                    stderr_sink=sink, live_stderr=live, flush_mark=b"data done")
    got = 0
    try:
        for chunk in chunks:
            got += len(chunk)
            if got == 102400:
                assert b"data done" in live and b"facts after" not in live
                pod_exec.run(mgmt1_api, NAMESPACE, pod, "etcd", ["touch", gate])
        assert got == 102400 and b"facts after" in sink
    finally:
        pod_exec.run(mgmt1_api, NAMESPACE, pod, "etcd", ["rm", "-f", gate], check=False)
