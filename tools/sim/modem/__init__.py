"""The cellular world the hub's SMS path meets: an emulated modem on a pty (emulator.py, its AT
table in commands.py), a fake network carrying SMS between numbers (network.py), and an SMS
gateway that hands what reaches the platform's number to its HTTP callback (gateway.py)."""
