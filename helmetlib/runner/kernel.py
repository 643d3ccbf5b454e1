"""The `helmetlib` Jupyter kernel that the notebooks name: this Python's ipykernel, talking to its client over local
sockets instead of TCP ports.

ipykernel warns "Kernel is running over TCP without encryption" on every start over TCP, the transport Jupyter's
default kernel manager picks (papermill's, JupyterLab's); anyone on the machine can reach those ports. The kernelspec
names `LocalSocketsProvisioner`, which moves the kernel to socket files of its own before it starts, whatever
starts it. `helmet-reports` installs the kernelspec on every run (`ensure_kernel`); `python -m helmetlib.kernel`
installs it alone, for plain papermill or JupyterLab before any run.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

KERNEL_NAME = "helmetlib"
DISPLAY_NAME = "Python 3 (helmetlib)"  # as the notebooks' metadata says
PROVISIONER_NAME = "helmetlib-local-sockets"  # the entry point in pyproject.toml


class LocalSocketsProvisioner(LocalProvisioner):
    """Jupyter's local provisioner, with the kernel's channels on IPC socket files in the temporary folder.

    Each kernel gets socket files of its own name: jupyter_client's default IPC names (kernel-ipc-1, -2, ... in
    the working folder, the first free numbers) made two kernels starting at once in one folder read each other's
    messages ("Invalid Signature")."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        manager = self.parent
        if manager is not None and manager.transport == "tcp":  # not on a restart, which keeps its sockets
            manager.transport = "ipc"
            manager.ip = os.path.join(tempfile.gettempdir(), f"helmetlib-kernel-{uuid.uuid4().hex[:16]}")
        return await super().pre_launch(**kwargs)

    async def send_signal(self, signum: int) -> None:
        """Send `signum` to the kernel's process group, except the interrupt jupyter_client sends every kernel it
        shuts down while that kernel is not known to be busy.

        Papermill shuts the kernel down after its last cell; on a loaded machine that interrupt could land while the
        kernel was still finishing a message, and ipykernel printed "[IPKernelApp] ERROR | KeyboardInterrupt caught
        in kernel." under a run that had succeeded. A server that tracks the kernel's state (JupyterLab's) still
        interrupts a busy kernel before shutting it down; the interrupt button is not a shutdown and always signals."""
        manager = self.parent
        shutting_down_idle = (
            manager is not None
            and getattr(manager, "shutting_down", False)
            and getattr(manager, "execution_state", "idle") != "busy"
        )
        if signum == signal.SIGINT and shutting_down_idle:
            return
        await super().send_signal(signum)


def ensure_kernel() -> str:
    """Install (idempotently) the `helmetlib` kernelspec for this very Python and return its name.

    Installing replaces the kernelspec's folder; a lock beside it keeps two processes (Dask workers) from doing
    that at the same moment ("Directory not empty"). The spec is written in a temporary folder of our own:
    `ipykernel.kernelspec.install` leaves an empty `tmp…_kernels` folder in /tmp on every call."""
    from filelock import FileLock
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    with FileLock(str(kernels / f".{KERNEL_NAME}.lock"), timeout=120), tempfile.TemporaryDirectory() as scratch:
        spec = write_kernel_spec(
            Path(scratch) / KERNEL_NAME,
            overrides={
                "display_name": DISPLAY_NAME,
                "metadata": {"kernel_provisioner": {"provisioner_name": PROVISIONER_NAME}},
            },
            python_arguments=["-Xfrozen_modules=off"],  # as ipykernel's install: no debugger warning
        )
        KernelSpecManager().install_kernel_spec(spec, kernel_name=KERNEL_NAME, prefix=sys.prefix)
    return KERNEL_NAME


def main() -> None:
    """`python -m helmetlib.kernel`: install the kernelspec and say where."""
    from jupyter_client.kernelspec import KernelSpecManager

    name = ensure_kernel()
    print(f"installed the Jupyter kernel {name!r} in {KernelSpecManager().get_kernel_spec(name).resource_dir}")
