# Pin maps of the boards we support. An installer picks the board in the
# device's config.json; a config may override single pins.
#
# Wiring (firmware/README.md has the drawing):
# * Pendant buttons are wired between their pin and 3V3, with a pull-down
#   (an external 100 kOhm to GND, firmware/HARDWARE.md; the internal one is
#   set too): 1 means pressed. Active-high because the ESP32's EXT1 can wake
#   the chip on any of several pins only when any goes high (ANY_HIGH; its
#   other mode is ALL_LOW), and the C3's GPIO wake is used the same way.
# * The reed contact is a normally-closed (NC) reed between "contact" and GND:
#   the magnet on the door holds it open, so a closed door reads 1 and draws
#   no current through the pull-up; an open door reads 0. A normally-open reed
#   works too with "contact_open_level": 1 in config.json (it draws about
#   70 uA through the pull-up while the door is closed: most of the time).
# * The PIR module (toilet door, optional) drives "pir" high while it sees
#   someone.
# * The battery is measured through a 1:2 divider of two 1 MOhm resistors
#   (2 uA) with 100 nF across the lower one, on an ADC1 pin.
#
# "wake" says how a sleeping board is woken by a door contact, with
# MicroPython's machine API only (firmware/power.py):
#   ext0  the ESP32's EXT0 source: one RTC pin at a level ends light sleep
#         (Pin.irq(trigger=Pin.WAKE_LOW/WAKE_HIGH, wake=machine.SLEEP))
#   poll  no pin wake in MicroPython's machine API for this chip (the C3 has
#         no EXT0): light sleep in short slices, the inputs read after each
# "buttons" says how the pendant's three buttons wake it (firmware/power.py):
#   ext1  the ESP32's EXT1 source, ANY_HIGH on the three button pins (RTC
#         pins): esp32.wake_on_ext1(pins, esp32.WAKEUP_ANY_HIGH); ends light
#         and deep sleep, and the chip latches which pins woke it
#   gpio  the C3's GPIO wake, esp32.wake_on_gpio(pins, esp32.WAKEUP_ANY_HIGH)
#         (GPIO0-5 only; MicroPython 1.27+); deep sleep needs
#         machine.wake_pins() (1.29+) to tell the buttons apart, without it
#         the C3 pendant light-sleeps

WAKE_EXT0 = "ext0"
WAKE_POLL = "poll"
BUTTONS_EXT1 = "ext1"
BUTTONS_GPIO = "gpio"
NOT_PINS = ("wake", "buttons")  # board entries that are not GPIO numbers

BOARDS = {
    # Espressif ESP32-DevKitC (ESP32-WROOM-32). RTC pins (EXT0-capable):
    # 0, 2, 4, 12-15, 25-27, 32-39. ADC1 (usable with the radio on): 32-39.
    "esp32-devkitc": {
        "wake": WAKE_EXT0,
        "buttons": BUTTONS_EXT1,
        "led": 2,
        "buzzer": 25,
        "emergency": 13,
        "community_service": 14,
        "life_service": 27,
        "contact": 33,
        "pir": 32,
        "battery_adc": 34,
    },
    # Espressif ESP32-C3-DevKitM-1. GPIO8 carries the board's addressable RGB
    # LED, so the feedback LED is an ordinary LED on GPIO10. ADC1: GPIO0-4.
    "esp32-c3-devkitm": {
        "wake": WAKE_POLL,
        "buttons": BUTTONS_GPIO,
        "led": 10,
        "buzzer": 7,
        "emergency": 2,
        "community_service": 3,
        "life_service": 4,
        "contact": 5,
        "pir": 1,
        "battery_adc": 0,
    },
}

# The pins each role needs (others in the map are left alone).
ROLE_PINS = {
    "pendant": ("led", "buzzer", "emergency", "community_service", "life_service", "battery_adc"),
    "front_door": ("led", "buzzer", "contact", "battery_adc"),
    "toilet_door": ("led", "buzzer", "contact", "battery_adc"),
}
