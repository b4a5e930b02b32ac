"""LilyGO T-SIM7600E (board revision V1.3, "T54_V1.3"): ESP32-WROVER-B/E
with a SIMCom SIM7600E whose GNSS receiver is inside the modem.

Sources (abbreviations used in the table):
  LG   github.com/Xinyuan-LilyGO/LilyGo-Modem-Series @7d8ce57,
       examples/ATdebug/utilities.h (SIM7600X block, lines 388-441) and
       docs/en/esp32/sim7600-esp32/REAMDE.MD ("Pins Map", lines 101-121)
  SCH  the same repository, schematic/esp32/T-SIM7600X-V1.3.pdf
  HD   SIMCom SIM7600 Series Hardware Design V1.02
  UA   SIMCom SIM7600 UART Application Note
  SL   SIMCom SIM7600 Sleep Mode Application Note V3.00

There is no modem supply switch: the modem is on the board's battery rail
whenever the board is powered (SCH sheet 4 has no ESP32 net; LG defines no
power-on pin for this board, unlike the T-A7670's GPIO12). PWRKEY alone
turns it on and off; STATUS says which. GPIO12 is the blue board LED.
"""

NAME = "t-sim7600e"

# name: (gpio, kind, active level, may the firmware drive it high?, source)
PINS = {
    "modem_tx": (27, "uart", 1, True, "LG utilities.h:392 MODEM_TX_PIN (27); ESP32 TX -> SIM7600 RXD"),
    "modem_rx": (26, "uart", 1, True, "LG utilities.h:391 MODEM_RX_PIN (26)"),
    # NPN (MMBT3904, SCH sheet 3) pulls the module's active-low PWRKEY to
    # ground: GPIO high = key pressed. On >= 100 ms (typ. 500), off >= 2.5 s (HD Tables 8, 9)
    "modem_pwrkey": (4, "out", 1, True, "LG utilities.h:402 BOARD_PWRKEY_PIN (4); SCH sheet 3 Q13; HD 3.2"),
    # high = the module may sleep (after AT+CSCLK=1); low wakes it, then 20 ms before data (UA 3.1.4)
    "modem_dtr": (32, "out", 1, True, "LG utilities.h:390 MODEM_DTR_PIN (32); UA 3.1.4; SL 3.1"),
    # low pulse: 60 ms per URC after AT+CFGRI=1, 120 ms per SMS (SL 5); input only
    "modem_ri": (33, "in", 0, False, "LG utilities.h:403 MODEM_RING_PIN (33); SL 5"),
    # high: powered on and firmware ready; low: off (HD 2.2 pin 49, 3.2.2); input only (GPIO34)
    "modem_status": (34, "in", 1, False, "LG utilities.h:394 MODEM_STATUS_PIN (34); HD 3.2.2"),
    # high (or open): normal; low: flight mode, RF off (HD Table 18)
    "modem_flight": (25, "out", 1, True, "LG utilities.h:393 MODEM_FLIGHT_PIN (25); HD Table 18"),
    # the blue board LED, lit when high: never driven high (covert)
    "led": (12, "out", 1, False, "LG utilities.h:404-405 BOARD_LED_PIN (12), LED_ON (HIGH); SCH sheet 2 LED_G1"),
    # VBAT through 100k/100k (x2)
    "battery_adc": (35, "adc", 1, False, "LG utilities.h:407 BOARD_BAT_ADC_PIN (35); SCH sheet 2 R62/R63"),
    # the hidden button: not on the stock board. GPIO39 is input-only with
    # no internal pull (ESP32 datasheet): fit a pull-up (docs/hardware.md);
    # an RTC GPIO, so it can wake light sleep (ext0)
    "button": (39, "in", 0, False, "docs/hardware.md (fitted by us); GPIO39 = SENSOR_VN, RTC_GPIO3"),
    # an external NMEA module is an option of the other board table
    "gnss_tx": (-1, "uart", 1, True, "not fitted: GNSS is inside the SIM7600 (LG REAMDE.MD:119)"),
    "gnss_rx": (-1, "uart", 1, True, "not fitted: GNSS is inside the SIM7600 (LG REAMDE.MD:119)"),
}

# Every light on the board. Only the first is on a GPIO; the others are
# wired to the modem or the charger and cannot be switched off by any
# firmware (LG REAMDE.MD:178): a board issued to a person has them removed
# (docs/hardware.md, "Preparing a board for issue").
LIGHTS = {
    "led": ("GPIO12 high", "SCH sheet 2 LED_G1 BLUE via R8 1K"),
    "modem_status_led": ("modem STATUS: on while the modem is on", "SCH sheet 3 LED_G5/LED_G8 RED via 390R; HD 3.2.2"),
    "netlight_led": ("modem NETLIGHT: on searching/in a call, 200 ms blink on LTE or sending data", "HD 3.11 Table 17; LG REAMDE.MD:173"),
    "charge_led": ("CN3065 CHRG: on while charging", "SCH sheet 1; LG REAMDE.MD:174"),
    "charged_led": ("CN3065 STDBY: on when charged", "SCH sheet 1; LG REAMDE.MD:175"),
}

# name: (value, source)
FACTS = {
    "modem_baud": (115200, "HD 3.3 (default 115200); LG utilities.h UART_BAUD"),
    "pwrkey_on_ms": (500, "HD Table 8: Ton min 100, typ 500 ms"),
    "pwrkey_off_ms": (3000, "HD Table 9: Toff min 2.5 s; LG uses 3000 ms (MODEM_POWEROFF_PULSE_WIDTH_MS)"),
    "status_on_ms": (13000, "HD Table 8: Ton(status) min 12, typ 13 s; no maximum given"),
    "uart_ready_ms": (12000, "HD Table 8: Ton(uart) min 11, typ 12 s"),
    "status_off_ms": (26000, "HD Table 9: Toff(status) min 25, typ 26 s"),
    "dtr_wake_ms": (20, "UA 3.1.4: pull DTR low, then 20 ms before sending"),
    "battery_divider": (2, "SCH sheet 2: 100k/100k"),
    "has_modem_supply_switch": (False, "SCH sheet 4; LG utilities.h (no power-on pin for the SIM7600X)"),
    "modem_reset_wired": (False, "SCH sheet 3: NRESET to test point TP9 only"),
    "gnss": ("modem", "LG REAMDE.MD:119 'GPS Enabled: Modem AUXVDD'; antenna bias from VDD_AUX (AT+CVAUXS)"),
}
