"""The simulator's two error roots, as protocol/errors.py has for the wire:

InputError: what the user gave the simulator cannot be run (a scenario
file, a route, a [device] or GNSS setting). The message names the file,
line or field; `panic sim` reports it as a usage error (exit 2).
Subclasses: scenario.ScenarioError, route.RouteError, setup.SetupError,
gnss.GnssError.

SimBug: the simulator's own code misused one of its parts (a timer in the
past, an unknown energy state, a results structure that must not be
written). A bug on our side: never caught to carry on.
Subclasses: clock.ClockError, energy.EnergyError, report.ReportError,
faithful.RigNotStarted.

Apart from both: esp32.WatchdogReset and esp32.RunEnd are BaseExceptions
that model the chip (a reset, the end of the run), not errors.
"""


class InputError(ValueError):
    """The user's input to the simulator cannot be used."""


class SimBug(Exception):
    """Misuse inside the simulator: a bug."""
