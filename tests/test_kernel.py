"""The `helmetlib` kernel the notebooks name: local sockets of its own for every kernel, whoever starts it (papermill
through nbclient, `helmet-reports`, the Jupyter server under JupyterLab)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from conftest import free_port

from helmetlib.runner.kernel import KERNEL_NAME

SHELL_ENDPOINT = (
    "import zmq; from ipykernel.kernelapp import IPKernelApp\n"
    "IPKernelApp.instance().shell_socket.getsockopt(zmq.LAST_ENDPOINT)"
)


def test_kernels_started_in_one_folder_get_socket_files_of_their_own(helmetlib_kernel, tmp_path, monkeypatch):
    """jupyter_client's own IPC names (kernel-ipc-1, ... in the working folder) were shared by two kernels starting
    at once: they read each other's messages. Here each gets its own, and no TCP port."""
    from jupyter_client.manager import KernelManager

    monkeypatch.chdir(tmp_path)
    managers = [KernelManager(kernel_name=helmetlib_kernel) for _ in range(2)]
    try:
        for manager in managers:
            manager.pre_start_kernel()  # what starting does before the process: the provisioner's choice, written
            info = json.loads(Path(manager.connection_file).read_text())
            assert info["transport"] == "ipc" and info["ip"] == manager.ip
            assert Path(manager.ip).name.startswith("helmetlib-kernel-")
        assert managers[0].ip != managers[1].ip
    finally:
        for manager in managers:
            manager.cleanup_resources()
    assert not list(tmp_path.iterdir())


def test_a_jupyter_server_runs_the_kernel_over_local_sockets(helmetlib_kernel, tmp_path):
    """JupyterLab's server starts the kernel the notebooks name, runs code in it over its websocket, and the kernel's
    shell channel is a socket file, not a TCP port."""
    from tornado.websocket import websocket_connect

    port, token = free_port(), uuid.uuid4().hex
    server = subprocess.Popen(
        [Path(sys.executable).parent / "jupyter-server", "--no-browser", f"--port={port}", "--allow-root"]
        + [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("w"),
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{api}?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{api}/kernels?token={token}", data=json.dumps({"name": KERNEL_NAME}).encode(), method="POST"
        )
        kernel = json.load(urllib.request.urlopen(request))

        async def execute() -> str:
            channels = await websocket_connect(
                f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token={token}"
            )
            header = {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": uuid.uuid4().hex}
            content = {"code": SHELL_ENDPOINT, "silent": False, "user_expressions": {}, "allow_stdin": False}
            header |= {"username": "test", "version": "5.3", "date": ""}
            message = {"header": header, "parent_header": {}, "metadata": {}, "channel": "shell", "content": content}
            await channels.write_message(json.dumps(message))
            while True:
                reply = json.loads(await asyncio.wait_for(channels.read_message(), 120))
                if reply["parent_header"].get("msg_id") == header["msg_id"] and reply["msg_type"] == "execute_result":
                    return reply["content"]["data"]["text/plain"]

        endpoint = asyncio.run(execute())
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert endpoint.startswith("b'ipc://") and "helmetlib-kernel-" in endpoint, endpoint
    assert "without encryption" not in (tmp_path / "server.log").read_text()


def test_python_m_helmetlib_kernel_installs_the_kernelspec_it_names():
    from jupyter_client.kernelspec import KernelSpecManager

    result = subprocess.run([sys.executable, "-m", "helmetlib.kernel"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    folder = KernelSpecManager().get_kernel_spec(KERNEL_NAME).resource_dir
    assert result.stdout.strip() == f"installed the Jupyter kernel {KERNEL_NAME!r} in {folder}"
    spec = json.loads((Path(folder) / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["metadata"]["kernel_provisioner"]["provisioner_name"]


def test_only_the_interrupt_button_signals_an_idle_kernel_not_its_shutdown(helmetlib_kernel, monkeypatch):
    """jupyter_client interrupts every kernel it shuts down; a kernel still finishing a message then printed
    "KeyboardInterrupt caught in kernel." under a papermill run that had succeeded. The provisioner leaves that
    interrupt out; interrupting a running cell still works."""
    from jupyter_client.manager import KernelManager

    sent = []
    send = os.killpg
    monkeypatch.setattr(os, "killpg", lambda group, signum: (sent.append(signum), send(group, signum)))
    manager = KernelManager(kernel_name=helmetlib_kernel)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        started = time.monotonic()
        request = client.execute("import time; time.sleep(60)")
        time.sleep(1)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == request
        assert reply["content"]["ename"] == "KeyboardInterrupt" and time.monotonic() - started < 30
        assert sent == [signal.SIGINT]
    finally:
        client.stop_channels()
        manager.shutdown_kernel()
    assert sent == [signal.SIGINT] and not manager.is_alive()
