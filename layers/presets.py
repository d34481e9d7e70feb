"""Named configurations.

``SURVEY``: the common configuration of the framework comparison in C. Lammie, W. Xiang and
M. Rahimi Azghadi, "Modeling and simulating in-memory memristive deep learning systems: an
overview of current efforts", Array 13, 100116 (2022): 16 x 16 1T1R tiles, differential
mapping (G+ and G- on separate tiles), R_on = 10 kOhm and R_off = 100 kOhm with device-to-device
standard deviations of 1 kOhm and 10 kOhm (10 % of R, normal, which is both at once), 6 evenly
spaced conductance states and a 6-bit ADC. What that comparison leaves open, circuitsim fixes
here: 1 ohm of wire per cell segment, ideal drivers and sense amplifiers, a linear memristor read
at 0.2 V, an NMOS access transistor (SPICE level 1, VTO 0.5 V, KP 200 uA/V^2, W/L = 10,
LAMBDA 0.01/V) with its gate at 1.8 V (about 400 ohm on), no DAC, and the ADC range calibrated
on sample inputs.
"""

from __future__ import annotations

from circuitsim.devices import Level1

from .config import ADC, TileConfig, Variability

__all__ = ["SURVEY"]

SURVEY = TileConfig(
    rows=16,
    cols=16,
    r_wl=1.0,
    r_bl=1.0,
    access=Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6, l=0.1e-6),
    v_gate=1.8,
    g_min=1.0 / 100e3,
    g_max=1.0 / 10e3,
    mapping="separate",
    v_read=0.2,
    levels=6,
    variability=Variability(0.1, distribution="normal", on="R", relative=True),
    adc=ADC(bits=6, range="calibrated"),
)
