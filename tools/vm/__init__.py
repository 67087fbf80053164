"""The virtual Pi: a QEMU VM on the machine's own root filesystem, booting Debian 12's stock
kernel with systemd as init, D-Bus and bluetoothd 5.66 as services, and `hci0` a controller
on the simulated home's air (tools/vm/README.md).

Modules: `kernel` (set-up: the kernel package, the initramfs), `initramfs` (what the VM's
first seconds run), `units` (the systemd units a run adds), `machine` (one run of the VM),
`guest_vhci` and `guest_scan` (run inside the VM), `cli` (`safebox-vm`).
"""
