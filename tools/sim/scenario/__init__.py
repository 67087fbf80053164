"""`safebox-sim run`: scenario files played on simulated time (tools/sim/SCENARIOS.md).

  spec.py     the TOML format, checked, every mistake naming its field
  vtime.py    the virtual-time event loop
  world.py    the home in one process: air, firmware (cpython_port), hub, platform
  runner.py   steps at their times, then the expectations judged
"""
