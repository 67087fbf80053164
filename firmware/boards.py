# Pin maps of the boards we support. An installer picks the board in the
# device's config.json; a config may override single pins.
#
# Buttons and reed contacts are wired between the pin and GND and read with the
# internal pull-up: 0 means pressed (button) or magnet present (door closed).
# The battery is measured through a 1:2 divider on an ADC pin.

BOARDS = {
    # Espressif ESP32-DevKitC (ESP32-WROOM-32): deep-sleep wake needs RTC pins.
    "esp32-devkitc": {
        "led": 2,
        "buzzer": 25,
        "emergency": 13,
        "community_service": 14,
        "life_service": 27,
        "contact": 33,
        "pir": 32,
        "battery_adc": 34,
    },
    # Espressif ESP32-C3-DevKitM-1: GPIO0-5 can wake it from deep sleep.
    "esp32-c3-devkitm": {
        "led": 8,
        "buzzer": 6,
        "emergency": 2,
        "community_service": 3,
        "life_service": 4,
        "contact": 5,
        "pir": 1,
        "battery_adc": 0,
    },
}
