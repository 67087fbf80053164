# Freezes the device firmware into a MicroPython build of your own, e.g.
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/safebox/firmware/manifest.py
# (frozen bytecode runs from flash: less RAM than .mpy files on the filesystem).
#
# In this repository firmware/ and protocol/ are the Python packages
# safebox.firmware and safebox.protocol (pyproject.toml's package-dir), but a
# manifest freezes a package under the folder names it finds. So the files are
# laid out as safebox/... in a staging folder first, and that is frozen: the
# same files, the same import names as the installed image (tools/build.py).
# Only the protocol modules a device needs go in (not signing.py, events.py).
#
# Installing onto a stock MicroPython board instead: package.json (mip), or the
# installer's flash tool, which copies the compiled image (tools/build.py).

import os
import shutil
import tempfile

VERSION = "0.2.0"
PROTOCOL_ON_DEVICE = ("__init__.py", "ccm.py", "bthome.py")

metadata(  # noqa: F821 (given by MicroPython's manifest processor)
    description="safebox devices: emergency pendant, front-door and toilet-door sensors (BTHome v2, encrypted)",
    version=VERSION,
    license="Apache-2.0",
)

# The manifest processor runs this file with its folder as the working directory.
_firmware = os.getcwd()
_protocol = os.path.join(os.path.dirname(_firmware), "protocol")
_stage = tempfile.mkdtemp(prefix="safebox-manifest-")  # read by the build after this file ran: kept
for _src, _names in ((_firmware, sorted(n for n in os.listdir(_firmware) if n.endswith(".py") and n != "manifest.py")),
                     (_protocol, PROTOCOL_ON_DEVICE)):
    _dest = os.path.join(_stage, "safebox", os.path.basename(_src))
    os.makedirs(_dest, exist_ok=True)
    for _name in _names:
        shutil.copyfile(os.path.join(_src, _name), os.path.join(_dest, _name))

package("safebox", base_path=_stage)  # noqa: F821
