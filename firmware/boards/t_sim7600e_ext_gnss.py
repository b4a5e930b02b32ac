"""The T-SIM7600E with an external NMEA GNSS module on UART2 (rx GPIO19,
tx GPIO18, 9600 baud), for boards whose antenna placement or power budget
calls for a separate receiver. Everything else is the T-SIM7600E table;
the modem's own GNSS stays off.

GPIO18/19 are free on the board (LG REAMDE.MD "Pins Map" lists neither);
the module's baud rate is its own default (u-blox M8 and Quectel L76:
9600, their data sheets); wire to suit and override with "pins".
"""

from firmware.boards import t_sim7600e as _base

NAME = "t-sim7600e-ext-gnss"
PINS = dict(_base.PINS)
PINS["gnss_rx"] = (19, "uart", 1, True, "free GPIO (LG REAMDE.MD Pins Map); module TX -> GPIO19")
PINS["gnss_tx"] = (18, "uart", 1, True, "free GPIO (LG REAMDE.MD Pins Map); GPIO18 -> module RX")
LIGHTS = dict(_base.LIGHTS)
FACTS = dict(_base.FACTS)
FACTS["gnss"] = ("uart", "external NMEA module on UART2")
FACTS["gnss_baud"] = (9600, "u-blox M8 / Quectel L76 default rate (their data sheets)")
